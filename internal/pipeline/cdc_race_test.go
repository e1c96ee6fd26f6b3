//go:build race

package pipeline_test

// raceEnabled: the race detector multiplies memory use, so RSS figures
// measured under it mean nothing.
const raceEnabled = true
