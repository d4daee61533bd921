package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func testFinding(dev string, seq uint64, cat string, at time.Time) *vigilv1.Finding {
	return &vigilv1.Finding{DeviceId: dev, Seq: seq, Category: cat, Check: "selftest", RuleId: "selftest",
		Severity: vigilv1.Severity_SEVERITY_INFO, Message: fmt.Sprintf("f %d", seq), ObservedAt: timestamppb.New(at)}
}

func devID(i int) string { return fmt.Sprintf("dev%023d", i) }

func openTest(t *testing.T, dir string, key []byte) *Store {
	t.Helper()
	s, err := Open(dir, Options{EncryptionKey: key, Retention: map[string]time.Duration{"selftest": time.Hour}, DefaultRetention: 0})
	if err != nil {
		t.Fatal(err)
	}
	// Close is idempotent; a store still open when TempDir's cleanup runs
	// keeps its tables open, which Windows refuses to unlink.
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCommitDedupeAndReopenEncrypted(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	s := openTest(t, dir, key)
	ctx := context.Background()
	base := time.Unix(1_800_000_000, 0)

	// 20 devices commit concurrently, each batch twice: the second is all dups.
	var wg sync.WaitGroup
	for d := 0; d < 20; d++ {
		wg.Add(1)
		go func(d int) {
			defer wg.Done()
			var batch []*vigilv1.Finding
			for i := 1; i <= 50; i++ {
				batch = append(batch, testFinding(devID(d), uint64(i), "selftest", base.Add(time.Duration(i)*time.Second)))
			}
			for round := 0; round < 2; round++ {
				for {
					stored, dups, err := s.CommitFindings(ctx, batch)
					if err == ErrOverloaded {
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					if round == 0 && (stored != 50 || dups != 0) || round == 1 && (stored != 0 || dups != 50) {
						t.Errorf("device %d round %d: stored=%d dups=%d", d, round, stored, dups)
					}
					break
				}
			}
		}(d)
	}
	wg.Wait()
	// Duplicates inside one batch are stored once.
	stored, dups, err := s.CommitFindings(ctx, []*vigilv1.Finding{testFinding(devID(99), 1, "x", base), testFinding(devID(99), 1, "x", base)})
	if err != nil || stored != 1 || dups != 1 {
		t.Fatalf("in-batch dup: stored=%d dups=%d err=%v", stored, dups, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening without the key must fail: the data is encrypted at rest.
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("opened an encrypted store without its key")
	}
	s = openTest(t, dir, key)
	defer s.Close()
	count := 0
	s.ListFindings(ctx, Query{}, func(*vigilv1.Finding) bool { count++; return true })
	if count != 20*50+1 {
		t.Fatalf("by time: %d findings, want %d", count, 20*50+1)
	}
	var seqs []uint64
	s.ListFindings(ctx, Query{Device: devID(3)}, func(f *vigilv1.Finding) bool { seqs = append(seqs, f.Seq); return true })
	if len(seqs) != 50 || seqs[0] != 1 || seqs[49] != 50 {
		t.Fatalf("by device: %v", seqs)
	}
	count = 0
	s.ListFindings(ctx, Query{Since: base.Add(41 * time.Second)}, func(*vigilv1.Finding) bool { count++; return true })
	if count != 20*10 {
		t.Fatalf("since: %d, want %d", count, 200)
	}
	// Retention: selftest findings carry a TTL, other categories none.
	s.db.View(func(txn *badger.Txn) error {
		it, _ := txn.Get(findingKey(devID(3), 1))
		if exp := time.Unix(int64(it.ExpiresAt()), 0); exp.Before(time.Now()) || exp.After(time.Now().Add(2*time.Hour)) {
			t.Errorf("selftest finding expires at %v, want about an hour from now", exp)
		}
		it, _ = txn.Get(findingKey(devID(99), 1))
		if it.ExpiresAt() != 0 {
			t.Errorf("default retention 0 should not expire, got %d", it.ExpiresAt())
		}
		return nil
	})
}

func TestOverloadAndClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{QueueLen: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Flood a queue of one: some callers must be told to back off, and every
	// caller that was accepted gets its answer.
	var wg sync.WaitGroup
	var mu sync.Mutex
	overloaded, ok := 0, 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, err := s.CommitFindings(context.Background(), []*vigilv1.Finding{testFinding(devID(i), 1, "x", time.Now())})
			mu.Lock()
			defer mu.Unlock()
			switch err {
			case nil:
				ok++
			case ErrOverloaded:
				overloaded++
			default:
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if overloaded == 0 || ok == 0 {
		t.Fatalf("ok=%d overloaded=%d: want both", ok, overloaded)
	}
	s.Close()
	if _, _, err := s.CommitFindings(context.Background(), []*vigilv1.Finding{testFinding(devID(1), 2, "x", time.Now())}); err != ErrClosed {
		t.Fatalf("after close: %v", err)
	}
}

func TestTokens(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	s.PutToken(Token{ID: "a", SecretHash: "h", Group: "pupils", ExpiresAt: now.Add(time.Hour), MaxUses: 2})
	s.PutToken(Token{ID: "old", SecretHash: "h", Group: "pupils", ExpiresAt: now.Add(-time.Minute), MaxUses: 2})
	for i := 0; i < 2; i++ {
		if _, err := s.UseToken("a", "h", now); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		id, hash string
		want     error
	}{{"a", "h", ErrTokenUsedUp}, {"a", "wrong", ErrTokenUnknown}, {"nope", "h", ErrTokenUnknown}, {"old", "h", ErrTokenExpired}} {
		if _, err := s.UseToken(c.id, c.hash, now); err != c.want {
			t.Errorf("UseToken(%s,%s) = %v, want %v", c.id, c.hash, err, c.want)
		}
	}
}

func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := make([]byte, 32), make([]byte, 32)
	rand.Read(k1)
	rand.Read(k2)
	s := openTest(t, dir, k1)
	if _, _, err := s.CommitFindings(context.Background(), []*vigilv1.Finding{testFinding(devID(1), 1, "x", time.Now())}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := RotateKey(dir, k2, k1); err == nil {
		t.Fatal("rotation with the wrong current key succeeded")
	}
	if err := RotateKey(dir, k1, k2); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{EncryptionKey: k1}); err == nil {
		s.Close()
		t.Fatal("old key still opens the store after rotation")
	}
	s = openTest(t, dir, k2)
	defer s.Close()
	n := 0
	s.ListFindings(context.Background(), Query{}, func(*vigilv1.Finding) bool { n++; return true })
	if n != 1 {
		t.Fatalf("after rotation %d findings readable, want 1", n)
	}
}

func TestEvidenceStoredApartAndAccessLog(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	f := testFinding(devID(1), 1, "self_harm", time.Now())
	f.Evidence = []*vigilv1.EvidenceRef{{Id: "ev1", MediaType: "image/png", Sha256: sha256Hex([]byte("abc")), Size: 3}}
	f.EvidenceData = []*vigilv1.EvidenceBlob{{Id: "ev1", Data: []byte("abc")}}
	if _, _, err := s.CommitFindings(context.Background(), []*vigilv1.Finding{f}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Evidence(devID(1), "ev1", f.Evidence[0])
	if err != nil || string(got) != "abc" {
		t.Fatalf("evidence %q %v", got, err)
	}
	if _, err := s.Evidence(devID(1), "nope", nil); err != ErrNotFound {
		t.Fatalf("missing evidence: %v", err)
	}
	s.ListFindings(context.Background(), Query{Device: devID(1)}, func(f *vigilv1.Finding) bool {
		if len(f.EvidenceData) != 0 || len(f.Evidence) != 1 {
			t.Errorf("stored finding carries evidence bytes or lost its ref: %v", f)
		}
		return true
	})
	for i := 0; i < 3; i++ {
		if err := s.LogAccess(AccessEntry{Time: time.Now(), Who: "dsl", Action: "view-evidence", EvidenceID: "ev1"}); err != nil {
			t.Fatal(err)
		}
	}
	if log, err := s.AccessLog(); err != nil || len(log) != 3 || log[0].Who != "dsl" {
		t.Fatalf("access log %v %v", log, err)
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
