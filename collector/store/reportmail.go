package store

import (
	"encoding/json"
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// pfxReportMail: rm/<report>/<period> -> ReportMailed (JSON). One record per
// scheduled report e-mail sent, so a restart does not send it again.
const pfxReportMail = "rm/"

// ReportMailed records that a scheduled report's e-mail went out.
type ReportMailed struct {
	SentAt     time.Time `json:"sent_at"`
	Recipients int       `json:"recipients"`
}

// ReportMailSent says whether the e-mail for report (e.g. "monitoring")
// and period (e.g. "2026-W49") has been sent.
func (s *Store) ReportMailSent(report, period string) (bool, error) {
	var r ReportMailed
	err := getJSON(s.db, []byte(pfxReportMail+report+"/"+period), &r)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// MarkReportMailed records the e-mail for report and period as sent.
func (s *Store) MarkReportMailed(report, period string, r ReportMailed) error {
	v, _ := json.Marshal(r)
	return s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxReportMail+report+"/"+period), v) })
}
