package bench

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Usage is what one scenario cost the process that ran it.
//
// For silt's in-process scenarios: CPUSeconds is the change of
// getrusage(RUSAGE_SELF) user+system time across the scenario (every
// goroutine of this process, so it includes anything else the process did
// at the time; PostgreSQL runs in its own processes and is not counted).
// PeakRSSMiB is /proc/self/status VmHWM read at the end, after the peak
// was reset (write "5" to /proc/self/clear_refs, after a GC that returned
// freed memory to the OS) at the start; when the kernel refuses the reset,
// PeakRSSMiB is the process's peak so far and PeakReset is false.
//
// For child processes (pg_recvlogical, deltaops, delta-rs, Conduit):
// CPUSeconds is the child's rusage user+system time, PeakRSSMiB its
// VmHWM polled from /proc/PID/status (or its own VmHWM report).
type Usage struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	WallSecs   float64 `json:"wall_seconds"`
	PeakReset  bool    `json:"peak_reset"`
	Source     string  `json:"source"` // how it was measured
}

// PerMillion is CPU seconds per million units (changes, rows, records).
func (u Usage) PerMillion(units int64) float64 {
	if units <= 0 {
		return 0
	}
	return u.CPUSeconds / float64(units) * 1e6
}

// meter measures one in-process scenario.
type meter struct {
	start time.Time
	cpu   float64
	reset bool
}

func startMeter() *meter {
	runtime.GC()
	debug.FreeOSMemory()
	m := &meter{start: time.Now(), cpu: selfCPU()}
	if f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0); err == nil {
		_, err = f.WriteString("5")
		f.Close()
		m.reset = err == nil
	}
	return m
}

func (m *meter) stop() Usage {
	return Usage{CPUSeconds: selfCPU() - m.cpu, PeakRSSMiB: vmHWM(), WallSecs: time.Since(m.start).Seconds(),
		PeakReset: m.reset, Source: "in-process: getrusage(SELF) delta, VmHWM after clear_refs"}
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// vmHWM is /proc/self/status VmHWM in MiB (-1 when unknown).
func vmHWM() float64 { return readHWM("/proc/self/status") }

func readHWM(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return -1
}

// hwmWatch polls a running child's /proc/PID/status VmHWM. A child's
// ru_maxrss is no use here: Go starts children with vfork semantics, and
// Linux carries the parent's high-water mark across exec into the child's
// ru_maxrss, so it reports silt's own peak.
type hwmWatch struct {
	stop chan struct{}
	done chan struct{}
	peak float64
}

func watchHWM(pid int) *hwmWatch {
	w := &hwmWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		path := "/proc/" + strconv.Itoa(pid) + "/status"
		for {
			if v := readHWM(path); v > w.peak {
				w.peak = v
			}
			select {
			case <-w.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return w
}

// end stops polling (call before Wait reaps the child) and returns the peak in MiB.
func (w *hwmWatch) end() float64 {
	close(w.stop)
	<-w.done
	return w.peak
}

// childUsage is a finished child's CPU time (rusage) and the peak RSS seen by watchHWM.
func childUsage(cmd *exec.Cmd, wall time.Duration, peakMiB float64) Usage {
	u := Usage{WallSecs: wall.Seconds(), PeakRSSMiB: peakMiB, PeakReset: true,
		Source: "child process: rusage user+sys; VmHWM of /proc/PID/status polled every 10ms"}
	if cmd.ProcessState == nil {
		return u
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.CPUSeconds = tv(ru.Utime) + tv(ru.Stime)
	}
	return u
}
