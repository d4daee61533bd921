package enroll

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// restrictFile gives path a protected DACL for SYSTEM and Administrators
// only. Unix modes mean nothing on Windows, and C:\ProgramData grants
// Users read access by inheritance, which would let any pupil copy the
// enrollment token.
func restrictFile(path string) error {
	sd, err := windows.SecurityDescriptorFromString("D:P(A;;FA;;;SY)(A;;FA;;;BA)")
	if err != nil {
		return fmt.Errorf("build ACL for %s: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("build ACL for %s: %w", path, err)
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("restrict %s to SYSTEM and Administrators: %w", path, err)
	}
	return nil
}
