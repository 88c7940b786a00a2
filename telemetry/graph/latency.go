package graph

import (
	"math"
	"sort"
)

// latency is a sparse log-scale histogram of milliseconds: bin b holds
// values in (base*2^((b-1)/4), base*2^(b/4)], four bins per doubling, so a
// quantile read from it is within about 9% of the true value. An edge's
// calls usually fall in a handful of bins, so a short sorted slice beats a
// dense array by an order of magnitude in memory.
type latency struct {
	bins []latencyBin
}

type latencyBin struct {
	bin   uint8
	count uint32
}

const (
	latencyBase    = 0.05 // ms
	binsPerDouble  = 4
	maxLatencyBins = 255
)

func latencyBinOf(ms float64) uint8 {
	if !(ms > latencyBase) { // also catches NaN
		return 0
	}
	b := math.Ceil(binsPerDouble * math.Log2(ms/latencyBase))
	if b > maxLatencyBins {
		return maxLatencyBins
	}
	return uint8(b)
}

func (l *latency) observe(ms float64) { l.addN(latencyBinOf(ms), 1) }

func (l *latency) addN(b uint8, n uint32) {
	i := sort.Search(len(l.bins), func(i int) bool { return l.bins[i].bin >= b })
	if i < len(l.bins) && l.bins[i].bin == b {
		l.bins[i].count += n
		return
	}
	l.bins = append(l.bins, latencyBin{})
	copy(l.bins[i+1:], l.bins[i:])
	l.bins[i] = latencyBin{bin: b, count: n}
}

func (l *latency) merge(o *latency) {
	for _, x := range o.bins {
		l.addN(x.bin, x.count)
	}
}

// quantile returns the q-quantile (0 < q <= 1), as the geometric middle of
// the bin it falls in; 0 when empty.
func (l *latency) quantile(q float64) float64 {
	var total uint64
	for _, x := range l.bins {
		total += uint64(x.count)
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for _, x := range l.bins {
		seen += uint64(x.count)
		if seen >= rank {
			if x.bin == 0 {
				return latencyBase
			}
			return latencyBase * math.Exp2((float64(x.bin)-0.5)/binsPerDouble)
		}
	}
	return 0
}
