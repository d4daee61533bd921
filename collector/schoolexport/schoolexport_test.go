package schoolexport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestExportOneSchool: a school's export holds every record it owns
// (devices, findings, alerts with their review, evidence as stored, tokens,
// accounts, the access log about them), read back line by line, and
// nothing of the other school: no device, account, term, host name or
// token of it; no secret of any kind.
func TestExportOneSchool(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.AddSchool(store.School{ID: "oak", Name: "Oak Primary"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	type school struct{ id, prefix, device string }
	schools := []school{{"", "ash", "ashashashashashashashashas"}, {"oak", "oak", "oakoakoakoakoakoakoakoakoa"}}
	for _, sc := range schools {
		if err := st.PutDevice(store.Device{DeviceID: sc.device, School: sc.id, Group: "pupils", Hostname: sc.prefix + "-lap-01", LastSeen: now}); err != nil {
			t.Fatal(err)
		}
		var fs []*vigilv1.Finding
		for seq := uint64(1); seq <= 3; seq++ {
			f := &vigilv1.Finding{DeviceId: sc.device, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(now.Add(time.Duration(seq) * time.Minute)),
				Check: "antivirus", RuleId: "av", Status: "pass", Message: sc.prefix + " antivirus ok"}
			if seq == 3 {
				blob := []byte(sc.prefix + "-encrypted-screenshot")
				sum := sha256.Sum256(blob)
				ev := fmt.Sprintf("ev%030d", seq)
				f = &vigilv1.Finding{DeviceId: sc.device, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(now), User: sc.prefix + "pupil",
					Check: "screen", RuleId: "screen-keywords", Severity: vigilv1.Severity_SEVERITY_HIGH, Category: "self_harm",
					ScreenMatch:  &vigilv1.ScreenMatch{Term: sc.prefix + "secretterm", Library: "keywords", Category: "self_harm"},
					Evidence:     []*vigilv1.EvidenceRef{{Id: ev, MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(blob))}},
					EvidenceData: []*vigilv1.EvidenceBlob{{Id: ev, Data: blob}}}
			}
			fs = append(fs, f)
		}
		if _, _, err := st.CommitFindings(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
		if _, err := st.UpdateAlertState(sc.device, 3, func(s *store.AlertState) error {
			s.Status, s.Reason = "in_review", sc.prefix+" review reason"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		u, err := auth.NewUser(sc.prefix+"dsl", sc.prefix+" DSL", auth.RoleDSL, "correct horse battery", sc.prefix+"dsl@school.test", false, now)
		if err != nil {
			t.Fatal(err)
		}
		u.School = sc.id
		if err := st.CreateUser(u); err != nil {
			t.Fatal(err)
		}
		if err := st.PutToken(store.Token{ID: sc.prefix + "token01", SecretHash: sc.prefix + "secrethash", Group: "pupils", School: sc.id,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 5}); err != nil {
			t.Fatal(err)
		}
		if err := st.LogAccess(store.AccessEntry{Time: now, Who: sc.prefix + "dsl", Action: "view-evidence", AlertID: sc.device + "-3", Reason: sc.prefix + " look"}); err != nil {
			t.Fatal(err)
		}
		if err := st.AddSchoolTerm(store.SchoolTerm{ID: sc.prefix + "term", Term: sc.prefix + "nick", School: sc.id, AddedBy: sc.prefix + "dsl", AddedAt: now}, sc.prefix+" nick reason"); err != nil {
			t.Fatal(err)
		}
		if err := st.AddSchoolTerm(store.SchoolTerm{ID: "trust" + sc.prefix, Term: "trust nick " + sc.prefix, TrustWide: true, AddedBy: "lead", AddedAt: now}, "trust"); err != nil {
			t.Fatal(err)
		}
		if err := st.SuppressTerm(store.TermSuppression{School: sc.id, TermID: "trust" + sc.prefix, By: sc.prefix + "dsl", At: now, Reason: sc.prefix + " opt out"}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutExclusion(store.Exclusion{ID: sc.prefix + "x", AlertID: sc.device + "-3", Term: sc.prefix + "secretterm", Status: "pending",
			ProposedBy: sc.prefix + "dsl", ProposalReason: sc.prefix + " drama", School: sc.id}); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := auth.NewUser("admin", "Admin", auth.RoleAdmin, "correct horse battery", "", false, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(admin); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	counts, err := Export(context.Background(), st, "Oak Primary", "ceo", now,
		map[string][]byte{"local.yaml": []byte("# oak's own rules\n"), "keywords/oak-slang.txt": []byte("oakslang\n")}, &out)
	if err != nil {
		t.Fatal(err)
	}
	raw := out.String()
	for _, leak := range []string{"ashash", "ash-lap", "ashdsl", "ashpupil", "ashsecretterm", "ashtoken", "ash review", "ash-encrypted", "ashnick", "ash opt out", "ash drama", "ash nick", "secrethash", "password_hash", "totp", "$2a$", "admin"} {
		if strings.Contains(raw, leak) {
			i := strings.Index(raw, leak)
			t.Errorf("the export carries %q: …%s…", leak, raw[max(0, i-80):min(len(raw), i+40)])
		}
	}
	var lines []Line
	sc := bufio.NewScanner(strings.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d: %v", len(lines)+1, err)
		}
		lines = append(lines, l)
	}
	if len(lines) < 2 || lines[0].Kind != "header" || lines[0].Header.Format != Format || lines[0].Header.School.ID != "oak" ||
		lines[len(lines)-1].Kind != "end" {
		t.Fatalf("framing: first %+v last %+v", lines[0], lines[len(lines)-1])
	}
	want := map[string]int{"header": 1, "device": 1, "finding": 3, "alert": 1, "evidence": 1, "token": 1, "account": 1, "access": 1,
		"term": 1, "term_suppression": 1, "term_decision": 2, "exclusion": 1, "rules_override": 2}
	for k, n := range want {
		if counts[k] != n || lines[len(lines)-1].End.Counts[k] != n {
			t.Errorf("%s: %d exported (end line says %d), want %d", k, counts[k], lines[len(lines)-1].End.Counts[k], n)
		}
	}
	for _, l := range lines {
		switch l.Kind {
		case "finding":
			var f vigilv1.Finding
			if err := protojson.Unmarshal(l.Finding, &f); err != nil || f.DeviceId != "oakoakoakoakoakoakoakoakoa" || len(f.EvidenceData) != 0 {
				t.Errorf("finding line: %v %+v", err, &f)
			}
		case "alert":
			if l.Alert.State.Reason != "oak review reason" {
				t.Errorf("alert line: %+v", l.Alert)
			}
		case "evidence":
			b, err := base64.StdEncoding.DecodeString(l.Evidence.Ciphertext)
			if err != nil || string(b) != "oak-encrypted-screenshot" {
				t.Errorf("evidence line: %v %q", err, b)
			}
		case "rules_override":
			if l.RulesOverride.Path == "local.yaml" && string(l.RulesOverride.Data) != "# oak's own rules\n" || len(l.RulesOverride.SHA256) != 64 {
				t.Errorf("rules override line: %+v", l.RulesOverride)
			}
		case "account":
			if l.Account.Username != "oakdsl" {
				t.Errorf("account line: %+v", l.Account)
			}
		}
	}
	if _, err := Export(context.Background(), st, "no-such-school", "ceo", now, nil, io.Discard); err == nil {
		t.Error("export of a school that does not exist succeeded")
	}
}
