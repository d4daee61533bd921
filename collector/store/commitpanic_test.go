package store

import (
	"context"
	"errors"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// A panic inside the database during a group commit (Badger dereferenced
// nil in Txn.Get after failing to open a memtable at the descriptor limit)
// must fail that group's requests, unacknowledged, and leave the store
// serving the next commit: the collector never goes down with it.
func TestCommitPanicFailsGroupAndStoreKeepsServing(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	panics := 1
	s.beforeCommit = func([]*commitReq) {
		if panics > 0 {
			panics--
			var txn *struct{ n int }
			_ = txn.n // the nil dereference Badger made
		}
	}
	ctx := context.Background()
	f := testFinding(devID(1), 1, "selftest", time.Now())
	if _, _, err := s.CommitFindings(ctx, []*vigilv1.Finding{f}); !errors.Is(err, ErrCommitFailed) {
		t.Fatalf("commit during a database panic: err %v, want ErrCommitFailed", err)
	}
	stored, _, err := s.CommitFindings(ctx, []*vigilv1.Finding{testFinding(devID(1), 1, "selftest", time.Now())})
	if err != nil || stored != 1 {
		t.Fatalf("resent commit after the panic: stored %d, err %v; want it stored", stored, err)
	}
}
