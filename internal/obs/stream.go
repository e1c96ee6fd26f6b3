package obs

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/silt-dev/silt/internal/stream"
)

// StreamCollector turns a stream's per-shard stats into Prometheus
// metrics, read at scrape time. Labels are per shard, never per key.
//
// silt_stream_hot_shard_ratio is the busiest shard's incoming bytes
// divided by the mean, over the interval since the previous scrape (over
// everything since start on the first scrape, or when nothing came in
// since). 1 is an even spread; n (the shard count) means one shard takes
// everything. The same from the counters in PromQL:
//
//	max(rate(silt_stream_incoming_bytes_total[5m])) / avg(rate(silt_stream_incoming_bytes_total[5m]))
type StreamCollector struct {
	src stream.StatsReporter

	inBytes, inRecs, throttledW   *prometheus.Desc
	outBytes, outRecs, throttledR *prometheus.Desc
	age, end, hot                 *prometheus.Desc

	mu   sync.Mutex
	prev []int64 // incoming bytes per shard at the previous scrape
}

// NewStreamCollector returns a collector over src.
func NewStreamCollector(src stream.StatsReporter) *StreamCollector {
	shard := []string{"shard"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("silt_stream_"+name, help, labels, nil)
	}
	return &StreamCollector{
		src:        src,
		inBytes:    d("incoming_bytes_total", "Bytes (partition key plus data) appended to the shard.", shard),
		inRecs:     d("incoming_records_total", "Records appended to the shard.", shard),
		throttledW: d("throttled_writes_total", "Records whose write the shard's limit held back (Kinesis: ProvisionedThroughputExceeded, retried).", shard),
		outBytes:   d("outgoing_bytes_total", "Bytes read from the shard.", shard),
		outRecs:    d("outgoing_records_total", "Records read from the shard.", shard),
		throttledR: d("throttled_reads_total", "Reads the shard's read limit delayed.", shard),
		age:        d("iterator_age_milliseconds", "How far the shard's reader is behind the tip: age of the oldest unread record.", shard),
		end:        d("end_offset", "The shard's end offset.", shard),
		hot:        d("hot_shard_ratio", "Busiest shard's incoming bytes over the mean since the previous scrape (1 = even, shard count = one hot shard).", nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inBytes, c.inRecs, c.throttledW, c.outBytes, c.outRecs, c.throttledR, c.age, c.end, c.hot} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StreamCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.src.Stats()
	for _, s := range stats {
		l := strconv.Itoa(s.Shard)
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l)
		}
		counter(c.inBytes, s.IncomingBytes)
		counter(c.inRecs, s.IncomingRecords)
		counter(c.throttledW, s.ThrottledWrites)
		counter(c.outBytes, s.OutgoingBytes)
		counter(c.outRecs, s.OutgoingRecords)
		counter(c.throttledR, s.ThrottledReads)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, float64(s.IteratorAgeMillis), l)
		ch <- prometheus.MustNewConstMetric(c.end, prometheus.GaugeValue, float64(s.End), l)
	}
	ch <- prometheus.MustNewConstMetric(c.hot, prometheus.GaugeValue, c.hotRatio(stats))
}

// hotRatio computes the hot-shard figure since the previous call.
func (c *StreamCollector) hotRatio(stats []stream.ShardStats) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := make([]int64, len(stats))
	delta := make([]int64, len(stats))
	var moved bool
	for i, s := range stats {
		cur[i] = s.IncomingBytes
		delta[i] = s.IncomingBytes
		if len(c.prev) == len(stats) {
			delta[i] -= c.prev[i]
		}
		moved = moved || delta[i] != 0
	}
	if !moved {
		delta = cur
	}
	c.prev = cur
	return stream.HotShardRatio(delta)
}

// HotShard returns the hot-shard figure of a stats snapshot, over its
// cumulative incoming bytes, for status output.
func HotShard(stats []stream.ShardStats) float64 {
	load := make([]int64, len(stats))
	for i, s := range stats {
		load[i] = s.IncomingBytes
	}
	return stream.HotShardRatio(load)
}
