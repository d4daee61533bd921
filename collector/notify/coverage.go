package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// MailCoverage e-mails coverage alarms (collector/coverage) to the console's
// users by role, through the notifier's sending path and with its rule: a
// link only, no details. It e-mails every active user of roles who has an address that
// device needs attention; escalation says nobody acknowledged it in time.
// It reports how many were sent; an error only if none could be.
func (s *Notifier) MailCoverage(ctx context.Context, roles []string, device string, escalation bool) (int, error) {
	if s.cfg.Schools == nil {
		return 0, errors.New("coverage e-mail: no school policy configured, so nobody may be told")
	}
	users, err := s.st.Users()
	if err != nil {
		return 0, fmt.Errorf("list users for a coverage e-mail: %w", err)
	}
	want := map[string]bool{}
	for _, r := range roles {
		want[r] = true
	}
	subject, intro := "Vigil: a device stopped reporting", "A device stopped reporting or was tampered with while it is normally on."
	if escalation {
		subject = "Vigil: device coverage alarm not yet acknowledged"
		intro = "A device coverage alarm has not been acknowledged in time and is passed to you."
	}
	body := fmt.Sprintf("%s\r\n\r\n%s/#/devices/%s\r\n\r\n", intro, s.cfg.ConsoleURL, device) +
		"This message deliberately holds no details. Sign in to the console to see the device.\r\n"
	sent, tried := 0, 0
	var errs []error
	for _, u := range users {
		if u.Disabled || u.Email == "" || !want[u.Role] || ctx.Err() != nil || !s.cfg.Schools.SeesDevice(&u, device) {
			continue
		}
		tried++
		if err := s.deliver(device, u.Email, subject, body); err != nil {
			if s.cfg.OnFailure != nil {
				s.cfg.OnFailure("send")
			}
			errs = append(errs, fmt.Errorf("e-mail %s: %w", u.Username, err))
			continue
		}
		sent++
	}
	switch {
	case tried == 0:
		if s.cfg.OnFailure != nil {
			s.cfg.OnFailure("no_recipient")
		}
		return 0, fmt.Errorf("nobody with role %s has an e-mail address", strings.Join(roles, " or "))
	case sent == 0:
		return 0, errors.Join(errs...)
	}
	return sent, nil
}
