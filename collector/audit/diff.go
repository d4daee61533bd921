package audit

import (
	"encoding/json"
	"sort"
)

// Diff is what changed since the previous audit of the same scope.
type Diff struct {
	Previous       string         `json:"previous"`
	PreviousAt     string         `json:"previous_at"`
	DevicesNew     []string       `json:"devices_new,omitempty"`
	DevicesMissing []string       `json:"devices_missing,omitempty"`
	Devices        []DeviceChange `json:"devices,omitempty"`
}

// DeviceChange is one device's changes between two audits.
type DeviceChange struct {
	DeviceID          string             `json:"device_id"`
	SoftwareAdded     []string           `json:"software_added,omitempty"`
	SoftwareRemoved   []string           `json:"software_removed,omitempty"`
	ComplianceChanges []ComplianceChange `json:"compliance_changes,omitempty"`
}

// ComplianceChange is one check subject whose status changed.
type ComplianceChange struct {
	RuleID string `json:"rule_id"`
	Key    string `json:"key,omitempty"`
	Was    string `json:"was"` // "" when not reported before
	Now    string `json:"now"` // "" when no longer reported
}

// answer is the part of an inventory the diff reads.
type answer struct {
	Software []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"software"`
	Compliance []struct {
		RuleID string `json:"rule_id"`
		Key    string `json:"key"`
		Status string `json:"status"`
	} `json:"compliance"`
}

// Compare lists the differences from prev to cur. Devices count as present
// when they answered; a device that answered in only one of the two is new
// or missing.
func Compare(prev, cur Record) *Diff {
	d := &Diff{Previous: prev.ID, PreviousAt: prev.RequestedAt.UTC().Format("2006-01-02T15:04:05Z")}
	pa, ca := answers(prev), answers(cur)
	for id := range ca {
		if _, ok := pa[id]; !ok {
			d.DevicesNew = append(d.DevicesNew, id)
		}
	}
	for id := range pa {
		if _, ok := ca[id]; !ok {
			d.DevicesMissing = append(d.DevicesMissing, id)
		}
	}
	sort.Strings(d.DevicesNew)
	sort.Strings(d.DevicesMissing)
	for id, c := range ca {
		p, ok := pa[id]
		if !ok {
			continue
		}
		ch := DeviceChange{DeviceID: id}
		ps, cs := software(p), software(c)
		for k := range cs {
			if !ps[k] {
				ch.SoftwareAdded = append(ch.SoftwareAdded, k)
			}
		}
		for k := range ps {
			if !cs[k] {
				ch.SoftwareRemoved = append(ch.SoftwareRemoved, k)
			}
		}
		sort.Strings(ch.SoftwareAdded)
		sort.Strings(ch.SoftwareRemoved)
		pc, cc := compliance(p), compliance(c)
		keys := map[[2]string]bool{}
		for k := range pc {
			keys[k] = true
		}
		for k := range cc {
			keys[k] = true
		}
		for k := range keys {
			if pc[k] != cc[k] {
				ch.ComplianceChanges = append(ch.ComplianceChanges, ComplianceChange{RuleID: k[0], Key: k[1], Was: pc[k], Now: cc[k]})
			}
		}
		sort.Slice(ch.ComplianceChanges, func(i, j int) bool {
			a, b := ch.ComplianceChanges[i], ch.ComplianceChanges[j]
			return a.RuleID+"\x00"+a.Key < b.RuleID+"\x00"+b.Key
		})
		if len(ch.SoftwareAdded)+len(ch.SoftwareRemoved)+len(ch.ComplianceChanges) > 0 {
			d.Devices = append(d.Devices, ch)
		}
	}
	sort.Slice(d.Devices, func(i, j int) bool { return d.Devices[i].DeviceID < d.Devices[j].DeviceID })
	return d
}

func answers(r Record) map[string]answer {
	out := map[string]answer{}
	for _, res := range r.Results {
		if res.Status != "answered" {
			continue
		}
		var a answer
		if json.Unmarshal(res.Inventory, &a) == nil {
			out[res.DeviceID] = a
		}
	}
	return out
}

func software(a answer) map[string]bool {
	m := map[string]bool{}
	for _, s := range a.Software {
		m[s.Name+" "+s.Version] = true
	}
	return m
}

func compliance(a answer) map[[2]string]string {
	m := map[[2]string]string{}
	for _, c := range a.Compliance {
		m[[2]string{c.RuleID, c.Key}] = c.Status
	}
	return m
}
