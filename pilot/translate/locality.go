package translate

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/wrapperspb"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshd/meshd/pilot/model"
)

// localitySetting returns the locality load-balancing setting a service
// port gets from its DestinationRule for Envoy sidecars, or nil when its
// endpoints do not depend on where the proxy runs. As in istiod, failover
// (the default once outlier detection is on) needs outlier detection;
// distribute does not.
func localitySetting(dr *drEntry, port int32) *networking.LocalityLoadBalancerSetting {
	pp := policyFor(dr, nil, port)
	ls := pp.lb.GetLocalityLbSetting()
	if ls != nil && ls.GetEnabled() != nil && !ls.GetEnabled().GetValue() {
		return nil
	}
	if len(ls.GetDistribute()) > 0 {
		return ls
	}
	if pp.od == nil {
		return nil
	}
	if ls == nil {
		ls = &networking.LocalityLoadBalancerSetting{}
	}
	return ls
}

// localityAware reports whether any port of svc has a locality setting,
// i.e. whether its load assignments depend on the proxy's locality.
func localityAware(svc *model.Service, dr *drEntry) bool {
	if dr == nil {
		return false
	}
	for _, p := range svc.Ports {
		if localitySetting(dr, p.Port) != nil {
			return true
		}
	}
	return false
}

// localityMatches matches "region/zone/subzone" patterns, where a part may
// be "*" and missing trailing parts match anything.
func localityMatches(pattern string, l model.Locality) bool {
	parts := strings.Split(pattern, "/")
	have := []string{l.Region, l.Zone, l.SubZone}
	for i, p := range parts {
		if i >= 3 {
			break
		}
		if p != "*" && p != have[i] {
			return false
		}
	}
	return true
}

// applyLocality reshapes a load assignment for a proxy at from: distribute
// rules set the share of each locality; failover puts localities into
// priorities by how close they are (same subzone, zone, region, then the
// failover target region, then the rest).
func applyLocality(cla *endpoint.ClusterLoadAssignment, ls *networking.LocalityLoadBalancerSetting, from model.Locality) {
	if ls == nil {
		return
	}
	for _, d := range ls.GetDistribute() {
		if !localityMatches(d.GetFrom(), from) {
			continue
		}
		// Each group takes the most specific target matching it; a
		// target's share is split over its groups by endpoint count.
		chosen := make([]string, len(cla.Endpoints))
		perTarget := map[string]int{}
		for i, g := range cla.Endpoints {
			l := model.Locality{Region: g.GetLocality().GetRegion(), Zone: g.GetLocality().GetZone(), SubZone: g.GetLocality().GetSubZone()}
			best := -1
			for to := range d.GetTo() {
				if !localityMatches(to, l) {
					continue
				}
				spec := 0
				for _, part := range strings.Split(to, "/") {
					if part != "*" {
						spec++
					}
				}
				if spec > best || (spec == best && to < chosen[i]) {
					best, chosen[i] = spec, to
				}
			}
			if best >= 0 {
				perTarget[chosen[i]] += len(g.LbEndpoints)
			}
		}
		var kept []*endpoint.LocalityLbEndpoints
		for i, g := range cla.Endpoints {
			share := d.GetTo()[chosen[i]]
			if chosen[i] == "" || share == 0 {
				continue // the rule sends this locality nothing
			}
			// Per mille of the total, so that splits keep their precision.
			w := uint32(uint64(share) * 1000 * uint64(len(g.LbEndpoints)) / uint64(perTarget[chosen[i]]))
			if w == 0 {
				w = 1
			}
			g.LoadBalancingWeight = wrapperspb.UInt32(w)
			kept = append(kept, g)
		}
		cla.Endpoints = kept
		return
	}
	failTo := map[string]bool{}
	for _, f := range ls.GetFailover() {
		if f.GetFrom() == from.Region {
			failTo[f.GetTo()] = true
		}
	}
	prio := func(g *endpoint.LocalityLbEndpoints) uint32 {
		l := g.GetLocality()
		switch {
		case l.GetRegion() == from.Region && l.GetZone() == from.Zone && l.GetSubZone() == from.SubZone:
			return 0
		case l.GetRegion() == from.Region && l.GetZone() == from.Zone:
			return 1
		case l.GetRegion() == from.Region:
			return 2
		case failTo[l.GetRegion()]:
			return 3
		}
		return 4
	}
	used := map[uint32]bool{}
	for _, g := range cla.Endpoints {
		used[prio(g)] = true
	}
	// Envoy wants priorities numbered 0, 1, 2... without gaps.
	levels := make([]int, 0, len(used))
	for p := range used {
		levels = append(levels, int(p))
	}
	sort.Ints(levels)
	rank := map[uint32]uint32{}
	for i, p := range levels {
		rank[uint32(p)] = uint32(i)
	}
	for _, g := range cla.Endpoints {
		g.Priority = rank[prio(g)]
	}
}

// applyLocalityCluster turns on locality-weighted balancing where
// distribute rules set the weights.
func applyLocalityCluster(c *cluster.Cluster, ls *networking.LocalityLoadBalancerSetting) {
	if len(ls.GetDistribute()) == 0 {
		return
	}
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &cluster.Cluster_CommonLbConfig{}
	}
	c.CommonLbConfig.LocalityConfigSpecifier = &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
		LocalityWeightedLbConfig: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
	}
}
