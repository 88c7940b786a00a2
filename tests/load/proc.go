package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc/PID/stat.
const clockTicks = 100

// monitor samples the control plane's CPU time and RSS from /proc and the
// machine's MemAvailable, and stops the run when memory runs short: a
// control plane that balloons must not take the machine down with it.
type monitor struct {
	pid      int
	floor    int64
	stop     func(error)
	mu       sync.Mutex
	peakRSS  int64
	stopOnce sync.Once
}

func newMonitor(pid int, floor int64, stop func(error)) *monitor {
	return &monitor{pid: pid, floor: floor, stop: stop}
}

func (m *monitor) run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		m.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *monitor) sample() {
	if avail, err := memAvailable(); err == nil && avail < m.floor {
		m.stopOnce.Do(func() {
			m.stop(fmt.Errorf("MemAvailable %d MiB below the %d MiB floor", avail>>20, m.floor>>20))
		})
	}
	if m.pid == 0 {
		return
	}
	if rss, err := procRSS(m.pid); err == nil {
		m.mu.Lock()
		m.peakRSS = max(m.peakRSS, rss)
		m.mu.Unlock()
	}
}

// span is one scenario being measured.
type span struct {
	m       *monitor
	name    string
	start   time.Time
	cpu0    float64
	bytes0  []int64
	recon0  []int64
	proxies []*proxy
}

// begin starts measuring a scenario over proxies (which may still be nil:
// cold start creates them after).
func (m *monitor) begin(name string, proxies []*proxy) *span {
	s := &span{m: m, name: name, start: time.Now(), proxies: proxies}
	if m.pid != 0 {
		s.cpu0, _ = procCPU(m.pid)
	}
	m.mu.Lock()
	m.peakRSS = 0
	m.mu.Unlock()
	m.sample()
	for _, p := range proxies {
		var b, r int64
		if p != nil {
			b, r = p.bytes.Load(), p.reconnects.Load()
		}
		s.bytes0 = append(s.bytes0, b)
		s.recon0 = append(s.recon0, r)
	}
	return s
}

func (s *span) end(samples int, lat []time.Duration) Scenario {
	s.m.sample()
	sc := Scenario{Name: s.name, Samples: samples, WallSecs: time.Since(s.start).Seconds()}
	summarize(&sc, lat)
	if s.m.pid != 0 {
		if c, err := procCPU(s.m.pid); err == nil {
			sc.CPUSeconds = c - s.cpu0
		}
		s.m.mu.Lock()
		sc.PeakRSSMB = float64(s.m.peakRSS) / (1 << 20)
		s.m.mu.Unlock()
	}
	for i, p := range s.proxies {
		if p == nil {
			continue
		}
		sc.Bytes += p.bytes.Load() - s.bytes0[i]
		sc.Reconnects += int(p.reconnects.Load() - s.recon0[i])
		if p.err.Load() != nil {
			sc.Errors++
		}
	}
	if len(s.proxies) > 0 {
		sc.BytesProxy = sc.Bytes / int64(len(s.proxies))
	}
	return sc
}

// procCPU returns utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return (u + s) / clockTicks, nil
}

// procRSS returns VmRSS of pid in bytes.
func procRSS(pid int) (int64, error) {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
}

func memAvailable() (int64, error) { return statusField("/proc/meminfo", "MemAvailable:") }

// statusField reads a "Key:   N kB" line.
func statusField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, key, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}
