package audit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// ChainReader is the part of the store the latest-answer scan reads.
type ChainReader interface {
	AuditChain(id string) ([]store.AuditEntry, store.AuditHead, error)
	AuditHeaders() ([]store.AuditEntry, error)
}

// Software is one installed title as an audit answer gives it.
type Software struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Publisher string `json:"publisher,omitempty"`
	Source    string `json:"source,omitempty"`
}

// LatestAnswer is the newest audit answer of one device: what the licence
// reconciliation and the ICT inventory read.
type LatestAnswer struct {
	DeviceID string     `json:"device_id"`
	AuditID  string     `json:"audit_id"`
	At       time.Time  `json:"at"`
	Software []Software `json:"software"`
	// SoftwareOmitted: titles beyond the device's cap, so the list is
	// complete only when zero.
	SoftwareOmitted int `json:"software_omitted,omitempty"`
}

// LatestAnswers reads every audit and keeps, for each device, its newest
// answer (by the time it was recorded). A device that never answered an
// audit is absent.
func LatestAnswers(st ChainReader) (map[string]LatestAnswer, error) {
	headers, err := st.AuditHeaders()
	if err != nil {
		return nil, err
	}
	latest := map[string]store.AuditEntry{}
	auditOf := map[string]string{}
	for _, h := range headers {
		var hdr Header
		if err := json.Unmarshal(h.Body, &hdr); err != nil {
			return nil, fmt.Errorf("audit header: %w", err)
		}
		entries, _, err := st.AuditChain(hdr.ID)
		if err != nil {
			return nil, fmt.Errorf("read audit %s: %w", hdr.ID, err)
		}
		for _, e := range entries {
			if e.Kind != store.AuditAnswerEntry {
				continue
			}
			if prev, ok := latest[e.Device]; !ok || e.At.After(prev.At) {
				latest[e.Device], auditOf[e.Device] = e, hdr.ID
			}
		}
	}
	out := make(map[string]LatestAnswer, len(latest))
	for dev, e := range latest {
		var inv struct {
			Software        []Software `json:"software"`
			SoftwareOmitted int        `json:"software_omitted"`
		}
		if err := json.Unmarshal(e.Body, &inv); err != nil {
			return nil, fmt.Errorf("audit %s: answer of %s: %w", auditOf[dev], dev, err)
		}
		out[dev] = LatestAnswer{DeviceID: dev, AuditID: auditOf[dev], At: e.At, Software: inv.Software, SoftwareOmitted: inv.SoftwareOmitted}
	}
	return out, nil
}
