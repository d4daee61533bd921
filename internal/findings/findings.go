// Package findings holds helpers around the Finding model shared by agent
// and collector: severity names and the JSON line form the CLIs print.
package findings

import (
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// SeverityName is the lowercase name used in rule files and JSON; the proto
// enum and rules.Severity share their numbering.
func SeverityName(s vigilv1.Severity) string { return rules.Severity(s).String() }

// JSON is a finding as one line of `--json` output. Field names are part
// of the CLI contract.
type JSON struct {
	DeviceID    string                 `json:"device_id"`
	Seq         uint64                 `json:"seq"`
	Time        string                 `json:"time"`
	Group       string                 `json:"group,omitempty"`
	User        string                 `json:"user,omitempty"`
	Check       string                 `json:"check"`
	RuleID      string                 `json:"rule_id"`
	RuleVersion int32                  `json:"rule_version,omitempty"`
	Severity    string                 `json:"severity"`
	Category    string                 `json:"category,omitempty"`
	Status      string                 `json:"status,omitempty"`
	Message     string                 `json:"message"`
	Details     map[string]any         `json:"details,omitempty"`
	Evidence    []*vigilv1.EvidenceRef `json:"evidence,omitempty"`
	RulesHash   string                 `json:"rules_hash,omitempty"`
	// ScreenMatch: the typed match of a safeguarding alert.
	ScreenMatch *vigilv1.ScreenMatch `json:"screen_match,omitempty"`
}

// ToJSON converts a finding for JSON output.
func ToJSON(f *vigilv1.Finding) JSON {
	j := JSON{
		DeviceID: f.GetDeviceId(), Seq: f.GetSeq(), Group: f.GetGroup(), User: f.GetUser(),
		Check: f.GetCheck(), RuleID: f.GetRuleId(), RuleVersion: f.GetRuleVersion(),
		Severity: SeverityName(f.GetSeverity()), Category: f.GetCategory(), Status: f.GetStatus(),
		Message: f.GetMessage(), Evidence: f.GetEvidence(), RulesHash: f.GetRulesHash(), ScreenMatch: f.GetScreenMatch(),
	}
	if f.GetObservedAt() != nil {
		j.Time = f.GetObservedAt().AsTime().UTC().Format(time.RFC3339Nano)
	}
	if f.GetDetails() != nil {
		j.Details = f.GetDetails().AsMap()
	}
	return j
}
