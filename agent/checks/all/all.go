// Package all links every check into a binary: import it for its side
// effect of registering each check kind.
package all

import (
	_ "github.com/vigil-safeguarding/vigil/agent/checks" // selftest
	_ "github.com/vigil-safeguarding/vigil/agent/checks/antivirus"
	_ "github.com/vigil-safeguarding/vigil/agent/checks/bluetooth"
	_ "github.com/vigil-safeguarding/vigil/agent/checks/executables"
	_ "github.com/vigil-safeguarding/vigil/agent/checks/removable"
	_ "github.com/vigil-safeguarding/vigil/agent/checks/screenwatch"
	_ "github.com/vigil-safeguarding/vigil/agent/checks/sessionwatch"
)
