package console

// The console's side of schools as tenants: which school an account is
// created in, and the glue to collector/tenancy, where the policy lives.

import (
	"errors"
	"fmt"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
)

// tenancyPolicy is the school policy over the console's store.
func (s *Server) tenancyPolicy() *tenancy.Policy {
	if s.tenants == nil {
		s.tenants = &tenancy.Policy{Dir: s.st}
	}
	return s.tenants
}

// accountSchool resolves the school a new account is for: "" for the
// default school (records that name none belong to it). Admin accounts
// administer the installation and belong to no school: trust-level roles
// are not built yet, so a school-bound admin would be a role without a
// meaning.
func (s *Server) accountSchool(role, school string) (string, error) {
	sc, err := s.st.FindSchool(school)
	if errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("find school %q: %w", school, err)
	}
	if role == RoleAdmin && sc.ID != store.DefaultSchool {
		return "", fmt.Errorf("admin accounts administer the whole installation; give --school only to dsl, headteacher, technician and governor accounts")
	}
	if sc.ID == store.DefaultSchool {
		return "", nil
	}
	return sc.ID, nil
}
