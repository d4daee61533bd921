package store

import vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"

// legacyScreenCheck is the check kind under which agents before the typed
// ScreenMatch sent safeguarding matches, with the match in Details keys.
// Only UpgradeLegacyAlert reads it: findings already stored that way, and
// agents not yet upgraded, keep working.
const legacyScreenCheck = "screen"

// IsAlert is the one decision "this finding is a safeguarding alert": it
// carries a typed ScreenMatch. The store indexes exactly these (ai/, ax/).
func IsAlert(f *vigilv1.Finding) bool { return f.GetScreenMatch() != nil }

// UpgradeLegacyAlert gives a finding in the old form (check "screen", the
// match in Details keys "term", "library", "context", "title", "process",
// "source") its typed ScreenMatch, read from those keys, and reports
// whether it did. Findings that already have one, or are not screen
// findings, are left alone. The collector calls it on ingest (older agents)
// and the store when reading findings stored before the typed field.
func UpgradeLegacyAlert(f *vigilv1.Finding) bool {
	if f == nil || f.ScreenMatch != nil || f.GetCheck() != legacyScreenCheck {
		return false
	}
	d := f.GetDetails().GetFields()
	str := func(k string) string { return d[k].GetStringValue() }
	m := &vigilv1.ScreenMatch{
		Term: str("term"), Library: str("library"), Category: f.GetCategory(), Context: str("context"),
		WindowTitle: str("title"), Process: str("process"), User: f.GetUser(), Source: str("source"),
	}
	for _, e := range f.GetEvidence() {
		m.EvidenceIds = append(m.EvidenceIds, e.GetId())
	}
	f.ScreenMatch = m
	return true
}
