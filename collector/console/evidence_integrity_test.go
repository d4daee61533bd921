package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image/png"
	"testing"
	"time"

	"filippo.io/age"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func evidenceSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Issue 8 item 7 through the console: a later alert reusing an earlier
// alert's evidence id does not replace its screenshot, and revealing the
// later alert's evidence is refused (its SHA-256 is not the stored bytes').
func TestEvidenceReuseRefusedAndRevealVerified(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	first := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "kill myself", time.Now())
	c := e.login("dsl1")
	var d alertDetail
	c.getJSON("/api/v1/alerts/"+first, &d)
	ev := d.Evidence[0].ID

	// A second alert from the same device names the same evidence id with
	// other content (a replayed or forged finding).
	var ct bytes.Buffer
	w, _ := age.Encrypt(&ct, e.key.Recipient())
	w.Write([]byte("not the first alert's screenshot"))
	w.Close()
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.mu.Unlock()
	f := &vigilv1.Finding{DeviceId: testDevice, Seq: seq, Group: "pupils", ObservedAt: timestamppb.Now(), User: "pupil1",
		Check: "screen", RuleId: "screen-keywords", Severity: vigilv1.Severity_SEVERITY_HIGH, Category: "self_harm",
		Message:      "self_harm term in the active window title",
		Evidence:     []*vigilv1.EvidenceRef{{Id: ev, MediaType: "image/png", Sha256: evidenceSHA(ct.Bytes()), Size: int64(ct.Len())}},
		EvidenceData: []*vigilv1.EvidenceBlob{{Id: ev, Data: ct.Bytes()}},
		ScreenMatch:  &vigilv1.ScreenMatch{Term: "term", Category: "self_harm", User: "pupil1", EvidenceIds: []string{ev}}}
	r, err := e.st.Commit(context.Background(), []*vigilv1.Finding{f})
	if err != nil || r.Stored != 1 || len(r.EvidenceConflicts) != 1 {
		t.Fatalf("commit of the reusing finding: %+v %v", r, err)
	}
	second := AlertID(testDevice, seq)

	// The first alert still shows its own screenshot.
	resp := c.req("POST", "/api/v1/evidence/"+first+"/"+ev, map[string]string{"reason": "triage"}, nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reveal of the first alert: %d", resp.StatusCode)
	}
	if _, err := png.Decode(resp.Body); err != nil {
		t.Fatalf("first alert's evidence was replaced: %v", err)
	}
	// The second alert's reveal is refused and the refusal logged.
	code, b := c.do("POST", "/api/v1/evidence/"+second+"/"+ev, map[string]string{"reason": "triage"})
	if code != 409 || bytes.Contains(b, []byte("PNG")) {
		t.Fatalf("reveal of the reusing alert: %d %s", code, b)
	}
	refused := false
	for _, a := range e.accessLog() {
		if a.Action == "evidence-refused" && a.EvidenceID == ev {
			refused = true
		}
	}
	if !refused {
		t.Fatalf("refusal not in the access log: %v", fmt.Sprint(e.accessLog()))
	}
}
