// Package auth owns who a console user is: accounts and their lifecycle
// (create, change and reset passwords, disable, last sign-in), local
// sign-in with bcrypt and TOTP behind a rate limiter and a bounded hashing
// pool, sessions, and sign-in with an OpenID Connect provider. What a
// signed-in user may then see is the console's routing policy, not this
// package's. Records live in collector/store (u/ and s/ keys).
package auth

// Console roles.
const (
	RoleDSL         = "dsl"
	RoleHeadteacher = "headteacher"
	RoleTechnician  = "technician"
	RoleGovernor    = "governor"
	RoleAdmin       = "admin"
)

// Roles lists every console role.
var Roles = []string{RoleDSL, RoleHeadteacher, RoleTechnician, RoleGovernor, RoleAdmin}

// ValidRole says whether r is a console role.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}
