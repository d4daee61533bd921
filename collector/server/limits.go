package server

import (
	"fmt"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Limits on the strings an agent describes itself with. They are stored in
// the device record, which is kept in memory and rewritten on every flush,
// so one client must not be able to make it large. Real values are far
// below them (a DNS name is at most 253 bytes, GOOS/GOARCH a dozen).
//
// Enrollment refuses an over-long field (a technician is there to see the
// error). Hello and heartbeat strings are truncated to the same bounds
// instead (stream.go): refusing them would stop an enrolled device from
// reporting over a cosmetic field.
const (
	maxHostname        = 255
	maxOS              = 64
	maxArch            = 32
	maxAgentVersion    = 64
	maxHostFingerprint = 128
	maxToken           = 512
	maxLastError       = 512
)

type field struct {
	name string
	val  string
	max  int
}

// checkFields refuses the first over-long field, naming it, so a
// technician (or the fuzzer) sees exactly what was wrong.
func checkFields(what string, fs ...field) error {
	for _, f := range fs {
		if len(f.val) > f.max {
			return fmt.Errorf("%s field %s is %d bytes, the limit is %d", what, f.name, len(f.val), f.max)
		}
	}
	return nil
}

func checkEnrollRequest(r *vigilv1.EnrollRequest) error {
	return checkFields("enrollment request",
		field{"token", r.GetToken(), maxToken},
		field{"hostname", r.GetHostname(), maxHostname},
		field{"os", r.GetOs(), maxOS},
		field{"arch", r.GetArch(), maxArch},
		field{"host_fingerprint", r.GetHostFingerprint(), maxHostFingerprint},
		field{"agent_version", r.GetAgentVersion(), maxAgentVersion},
	)
}
