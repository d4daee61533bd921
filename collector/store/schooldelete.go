package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Deleting a school (it leaves the trust) removes every record it owns and
// nothing else. Ownership is decided here, in one place, from the key
// layout: a device is the school's by its record's School; what a device
// reported (findings in both indexes, alerts with their review state,
// notifications and filter index, evidence, audit queue entries,
// disposal and revocation records) is keyed by its device ID; tokens and
// console accounts name their school; an audit names its school in its
// header entry; an exclusion proposed from one of its alerts names the
// alert or the school; its own keyword terms, its suppressions of the
// trust's terms and their entries in the terms' decision log name the
// school. What stays is the installation's: the append-only access log (the
// accountability record of who read what, holding IDs only), the trust's
// keyword terms and their decisions, the rules history, the DfE register, licences and report-mail
// records; docs/security.md says so.
//
// A school being deleted is marked first (School.DeletingAt), so the
// school lists and lookups no longer offer it (no new enrollment token or
// account lands in it) and a deletion cut short by a crash is finished by
// running it again: every step is idempotent and the school record goes
// last.

// SchoolDeletion reports what DeleteSchool removed.
type SchoolDeletion struct {
	School  string `json:"school"`
	Devices int    `json:"devices"`
	// Keys counts the removed records by key prefix.
	Keys map[string]int `json:"keys"`
	// Grants counts other schools' accounts whose grant of the school
	// (a trust role) was taken away.
	Grants int `json:"grants"`
	// DataKeyDestroyed: the school's data key (sealing.go) was destroyed,
	// so no copy of its findings or triage records (a backup, a table not
	// yet compacted) can be read again.
	DataKeyDestroyed bool `json:"data_key_destroyed"`
}

// deleteBatch bounds the keys one write batch holds (Badger splits a
// WriteBatch into transactions itself; this bounds what is held in memory).
const deleteBatch = 10000

// DeleteSchool removes school id and everything it owns (see above). The
// default school cannot be deleted: it holds every record that names none.
// disconnect, if set, is called for each of its devices once the device
// is out of the cache (so it cannot stream again) and before anything is
// scanned, so nothing a live stream writes outlives the deletion.
func (s *Store) DeleteSchool(id string, at time.Time, disconnect func(deviceID string)) (SchoolDeletion, error) {
	rep := SchoolDeletion{School: id, Keys: map[string]int{}}
	if id == DefaultSchool || id == "" {
		return rep, fmt.Errorf("%w: the default school holds every record that names none; it cannot be deleted", ErrBadSchool)
	}
	var sc School
	if err := getJSON(s.db, []byte(pfxSchool+id), &sc); err != nil {
		return rep, fmt.Errorf("store: delete school %s: %w", id, err)
	}
	if sc.DeletingAt.IsZero() {
		sc.DeletingAt = at.UTC()
		v, _ := json.Marshal(sc)
		if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxSchool+id), v) }); err != nil {
			return rep, fmt.Errorf("store: mark school %s deleting: %w", id, err)
		}
	}

	// Its devices leave the cache first, so a device flush cannot write
	// one back; a stream of one of them is refused once its record is gone
	// (collector/server: not enrolled).
	devs := map[string]bool{}
	s.flushMu.Lock()
	s.devMu.Lock()
	for did, d := range s.devices {
		if SchoolOf(d.School) == id {
			devs[did] = true
			delete(s.devices, did)
			delete(s.dirty, did)
		}
	}
	s.devMu.Unlock()
	s.flushMu.Unlock()
	// Records on disk the cache does not hold (a crash after the cache
	// was emptied by an earlier run, before its records were removed).
	if err := scanJSON(s.db, pfxDevice, func(_, v []byte) error {
		var d Device
		if json.Unmarshal(v, &d) == nil && SchoolOf(d.School) == id {
			devs[d.DeviceID] = true
		}
		return nil
	}); err != nil {
		return rep, fmt.Errorf("store: delete school %s: list devices: %w", id, err)
	}
	rep.Devices = len(devs)
	if disconnect != nil {
		for d := range devs {
			disconnect(d)
		}
	}

	keys, grants, err := s.schoolKeys(id, devs)
	if err != nil {
		return rep, fmt.Errorf("store: delete school %s: %w", id, err)
	}
	for i := 0; i < len(keys); i += deleteBatch {
		end := min(i+deleteBatch, len(keys))
		if err := s.deleteKeys(keys[i:end]); err != nil {
			return rep, fmt.Errorf("store: delete school %s: %w", id, err)
		}
	}
	for _, k := range keys {
		rep.Keys[keyPrefix(k)]++
	}
	for _, u := range grants {
		if _, err := s.UpdateUser(u, func(u *User) error {
			kept := u.Granted[:0]
			for _, g := range u.Granted {
				if g != id {
					kept = append(kept, g)
				}
			}
			u.Granted = kept
			return nil
		}); err != nil {
			return rep, fmt.Errorf("store: delete school %s: take the grant from %s: %w", id, u, err)
		}
		rep.Grants++
	}
	// The data key goes once its records are gone (a deletion cut short
	// before this leaves the records readable for the run that finishes
	// it) and before the school record, so a run that found the record
	// has destroyed the key.
	if s.opts.DataKeys != nil {
		if rep.DataKeyDestroyed, err = s.opts.DataKeys.Destroy(id); err != nil {
			return rep, fmt.Errorf("store: delete school %s: %w", id, err)
		}
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete([]byte(pfxSchool + id)) }); err != nil {
		return rep, fmt.Errorf("store: delete school %s: the school record: %w", id, err)
	}
	rep.Keys[pfxSchool]++
	return rep, nil
}

// schoolKeys lists every key school id owns, given its devices, and the
// other accounts granted it.
func (s *Store) schoolKeys(id string, devs map[string]bool) (keys [][]byte, grants []string, err error) {
	users := map[string]bool{}
	audits := map[string]bool{}
	alertTails := map[string]bool{} // <ns:8><device><seq:8> of its alerts
	var filterKeys [][]byte         // ax/: checked against alertTails after the scan
	// byDevice: prefixes followed directly by a device ID.
	byDevice := []string{pfxFindingByDevice, pfxEvidence, pfxEvidenceMeta, pfxAuditQueue, pfxAlertState, pfxNotify, pfxDevice, pfxDisposal, pfxRevoked}
	// afterTime: prefixes followed by <ns:8><device><seq:8>.
	afterTime := []string{pfxFindingByTime, pfxAlertIndex}
	hasDevice := func(rest []byte) bool {
		for d := range devs {
			if bytes.HasPrefix(rest, []byte(d)) {
				return true
			}
		}
		return false
	}
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
	next:
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			for _, p := range byDevice {
				if bytes.HasPrefix(k, []byte(p)) {
					if hasDevice(k[len(p):]) {
						keys = append(keys, item.KeyCopy(nil))
					}
					continue next
				}
			}
			for _, p := range afterTime {
				if bytes.HasPrefix(k, []byte(p)) && len(k) >= len(p)+16 {
					if devs[string(k[len(p)+8:len(k)-8])] {
						keys = append(keys, item.KeyCopy(nil))
						if p == pfxAlertIndex {
							alertTails[string(k[len(p):])] = true
						}
					}
					continue next
				}
			}
			if bytes.HasPrefix(k, []byte(pfxAlertFilter)) {
				filterKeys = append(filterKeys, item.KeyCopy(nil))
				continue
			}
			var mine bool
			var verr error
			switch {
			case bytes.HasPrefix(k, []byte(pfxToken)):
				verr = item.Value(func(v []byte) error {
					var t Token
					mine = json.Unmarshal(v, &t) == nil && SchoolOf(t.School) == id
					return nil
				})
			case bytes.HasPrefix(k, []byte(pfxUser)):
				verr = item.Value(func(v []byte) error {
					var u User
					if json.Unmarshal(v, &u) != nil {
						return nil
					}
					if SchoolOf(u.School) == id && u.School != "" {
						mine, users[u.Username] = true, true
					}
					for _, g := range u.Granted {
						if g == id && !mine {
							grants = append(grants, u.Username)
						}
					}
					return nil
				})
			case bytes.HasPrefix(k, []byte(pfxAuditEntry)):
				verr = item.Value(func(v []byte) error {
					var e AuditEntry
					if json.Unmarshal(v, &e) != nil || e.Kind != AuditHeaderEntry {
						return nil
					}
					var h struct {
						School string `json:"school"`
					}
					rest := k[len(pfxAuditEntry):]
					if i := bytes.IndexByte(rest, '/'); i > 0 && json.Unmarshal(e.Body, &h) == nil && h.School == id {
						audits[string(rest[:i])] = true
					}
					return nil
				})
			case bytes.HasPrefix(k, []byte(pfxExclusion)):
				verr = item.Value(func(v []byte) error {
					var x Exclusion
					if json.Unmarshal(v, &x) == nil {
						if d, _, ok := ParseAlertID(x.AlertID); ok && devs[d] {
							mine = true
						}
						mine = mine || (!x.TrustWide && x.School == id)
					}
					return nil
				})
			case bytes.HasPrefix(k, []byte(pfxSchoolTerm)):
				verr = item.Value(func(v []byte) error {
					var t SchoolTerm
					mine = json.Unmarshal(v, &t) == nil && !t.TrustWide && t.School == id
					return nil
				})
			case bytes.HasPrefix(k, []byte(pfxTermSuppress+id+"/")):
				mine = true
			case bytes.HasPrefix(k, []byte(pfxTermDecision)):
				// The decisions about its own terms and its suppressions
				// are the school's (a term is often a pupil's nickname);
				// those about the trust's terms stay.
				verr = item.Value(func(v []byte) error {
					var d TermDecision
					mine = json.Unmarshal(v, &d) == nil && (d.School == id || !d.Term.TrustWide && d.Term.School == id)
					return nil
				})
			}
			if verr != nil {
				return verr
			}
			if mine {
				keys = append(keys, item.KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scan what it owns: %w", err)
	}
	// Sessions of its accounts, and the entries and heads of its audits:
	// a second pass now the owners are known.
	err = s.db.View(func(txn *badger.Txn) error {
		if len(users) > 0 {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pfxSession)})
			for it.Rewind(); it.Valid(); it.Next() {
				var sess Session
				it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &sess) })
				if users[sess.Username] {
					keys = append(keys, it.Item().KeyCopy(nil))
				}
			}
			it.Close()
		}
		for a := range audits {
			for _, p := range []string{pfxAuditEntry + a + "/", pfxAuditHead + a} {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p)})
				for it.Rewind(); it.Valid(); it.Next() {
					if p == pfxAuditHead+a && len(it.Item().Key()) != len(p) {
						continue // another audit whose ID starts with a
					}
					keys = append(keys, it.Item().KeyCopy(nil))
				}
				it.Close()
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scan its sessions and audits: %w", err)
	}
	lengths := map[int]bool{}
	for t := range alertTails {
		lengths[len(t)] = true
	}
	for _, k := range filterKeys {
		for n := range lengths {
			if len(k) >= n && alertTails[string(k[len(k)-n:])] {
				keys = append(keys, k)
				break
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	return keys, grants, nil
}

func (s *Store) deleteKeys(keys [][]byte) error {
	if err := s.writeAllowed(false); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return s.mapWriteErr(err)
		}
	}
	return s.mapWriteErr(wb.Flush())
}

// keyPrefix names a key's record kind for the deletion report: up to and
// including its last "/" among the first few bytes.
func keyPrefix(k []byte) string {
	for _, p := range []string{pfxFindingByDevice, pfxFindingByTime, pfxAuditEntry, pfxAuditHead, pfxAuditQueue} {
		if bytes.HasPrefix(k, []byte(p)) {
			return p
		}
	}
	if i := bytes.IndexByte(k, '/'); i > 0 {
		return string(k[:i+1])
	}
	return string(k)
}
