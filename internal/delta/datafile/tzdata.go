package datafile

// TableInfo.PartitionTimeZone is set from zone names (the CLI's
// --partition-tz, tests) through time.LoadLocation, which needs the IANA
// database; embed it so that works on machines without /usr/share/zoneinfo
// (minimal CI and container images). Costs about 450 KB of binary size.
import _ "time/tzdata"
