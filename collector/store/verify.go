package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
	"google.golang.org/protobuf/proto"
)

// tableDamage is one table that failed verification.
type tableDamage struct {
	id   uint64
	file string
	err  error
	// unopenable: its index is damaged, so Badger cannot open it at all
	// (and would refuse to start); such a table is taken out of the store.
	unopenable bool
	// keys are the user keys of its intact blocks, to be rewritten so they
	// outlive the damaged table; badBlocks counts the blocks that are not.
	keys        [][]byte
	badBlocks   int
	quarantined string
	reported    bool // an earlier run quarantined and reported it
	salvaged    bool // its intact entries were rewritten into sound tables
}

// verifyTables checks every table the manifest lists, one by one, so that
// all damaged tables are named (Badger's DB.VerifyChecksum stops at the
// first, and with per-block verification on it dereferences a nil block on
// a damaged one). Each table is opened read-only from its own mapping with
// whole-table verification; Badger's open tables are not touched.
func verifyTables(dir string, bopts badger.Options) ([]tableDamage, error) {
	mf, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	man, _, err := badger.ReplayManifestFile(mf, bopts.ExternalMagicVersion, bopts)
	mf.Close()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	// Always through the key registry: with a wrong or missing key it
	// fails here, and no table is ever judged damaged for want of its key.
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{Dir: dir, ReadOnly: true,
		EncryptionKey: bopts.EncryptionKey, EncryptionKeyRotationDuration: bopts.EncryptionKeyRotationDuration})
	if err != nil {
		return nil, fmt.Errorf("open key registry: %w", err)
	}
	defer kr.Close()
	// Encrypted tables keep their index only in a cache.
	icache, err := ristretto.NewCache(&ristretto.Config[uint64, *fb.TableIndex]{NumCounters: 1000, MaxCost: 8 << 20, BufferItems: 64})
	if err != nil {
		return nil, err
	}
	defer icache.Close()
	ids := make([]uint64, 0, len(man.Tables))
	for id := range man.Tables {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []tableDamage
	for _, id := range ids {
		tm := man.Tables[id]
		var dk *pb.DataKey
		if tm.KeyID != 0 {
			if dk, err = kr.DataKey(tm.KeyID); err != nil {
				out = append(out, tableDamage{id: id, file: table.IDToFilename(id), err: fmt.Errorf("data key %d: %w", tm.KeyID, err), unopenable: true})
				continue
			}
		}
		topts := table.Options{ReadOnly: true, ChkMode: options.OnTableRead, DataKey: dk, Compression: tm.Compression,
			BlockSize: bopts.BlockSize, BloomFalsePositive: bopts.BloomFalsePositive, IndexCache: icache}
		path := table.NewFilename(id, dir)
		if err := verifyTable(path, topts); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // compacted away since the manifest was read
			}
			d := tableDamage{id: id, file: table.IDToFilename(id), err: err}
			topts.ChkMode = options.OnBlockRead
			if d.keys, d.badBlocks, err = intactKeys(path, topts); err != nil {
				d.unopenable = true
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// verifyTable opens one table file with whole-table checksum verification.
// A damaged file can make Badger's table code panic (nil block, corrupt
// flatbuffer index); that is damage too, never a crash.
func verifyTable(path string, opts table.Options) (err error) {
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return err
		}
		return fmt.Errorf("map table: %w", err)
	}
	// Not Table.DecrRef: at zero references it deletes the file.
	defer mf.Close(-1)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("table %s is unreadable: %v", filepath.Base(path), r)
		}
	}()
	if _, err := table.OpenTable(mf, opts); err != nil {
		return fmt.Errorf("table %s: %w", filepath.Base(path), err)
	}
	return nil
}

// intactKeys lists the user keys stored in the table's intact blocks,
// reading block by block (each block's first key is in the index) with
// per-block verification, so one bad block costs only its own entries.
func intactKeys(path string, opts table.Options) (keys [][]byte, bad int, err error) {
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	defer mf.Close(-1)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("table %s is unreadable: %v", filepath.Base(path), r)
		}
	}()
	t, err := table.OpenTable(mf, opts)
	if err != nil {
		return nil, 0, err
	}
	bases := t.KeySplits(1<<30, nil) // every block's first key
	it := t.NewIterator(0)
	defer it.Close()
	seen := map[string]bool{}
	for b, base := range bases {
		it.Seek([]byte(base))
		if !it.Valid() {
			bad++
			continue
		}
		for ; it.Valid(); it.Next() {
			k := it.Key()
			if b+1 < len(bases) && y.CompareKeys(k, []byte(bases[b+1])) >= 0 {
				break
			}
			uk := y.ParseKey(k)
			if !seen[string(uk)] {
				seen[string(uk)] = true
				keys = append(keys, append([]byte(nil), uk...))
			}
		}
	}
	return keys, bad, nil
}

// removeTables takes unopenable tables out of the store before Badger
// opens it: the file moves to the quarantine dir (unless a copy is there
// already) and a DELETE change for it is appended to the MANIFEST, framed
// as Badger frames its own (length, CRC-32C, ManifestChangeSet).
func removeTables(dir string, ids []uint64) error {
	if len(ids) == 0 {
		return nil
	}
	var cs pb.ManifestChangeSet
	for _, id := range ids {
		cs.Changes = append(cs.Changes, &pb.ManifestChange{Id: id, Op: pb.ManifestChange_DELETE})
	}
	buf, err := proto.Marshal(&cs)
	if err != nil {
		return err
	}
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(buf)))
	binary.BigEndian.PutUint32(hdr[4:8], crc32.Checksum(buf, y.CastagnoliCrcTable))
	f, err := os.OpenFile(filepath.Join(dir, badger.ManifestFilename), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(hdr[:], buf...)); err != nil {
		f.Close()
		return fmt.Errorf("append to manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, id := range ids {
		os.Remove(table.NewFilename(id, dir))
	}
	return nil
}
