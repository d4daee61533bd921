package removable

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/windows"
)

const ioctlStorageQueryProperty = 0x2D1400

// windowsSource lists drive letters whose drive type is removable, or
// fixed on a USB/SD bus (USB disks), polling every interval.
type windowsSource struct{ interval time.Duration }

func newSource() (source, error) { return &windowsSource{interval: 2 * time.Second}, nil }

func (s *windowsSource) Close() {}

func (s *windowsSource) Wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(s.interval):
	}
}

func (s *windowsSource) List(ctx context.Context) ([]Medium, error) {
	mask, err := windows.GetLogicalDrives()
	if err != nil {
		return nil, fmt.Errorf("GetLogicalDrives: %w", err)
	}
	var out []Medium
	for i := 0; i < 26; i++ {
		if mask&(1<<uint(i)) == 0 || ctx.Err() != nil {
			continue
		}
		letter := string(rune('A'+i)) + ":"
		if m, ok := driveMedium(letter); ok {
			out = append(out, m)
		}
	}
	return out, ctx.Err()
}

func driveMedium(letter string) (Medium, bool) {
	root, _ := windows.UTF16PtrFromString(letter + `\`)
	t := windows.GetDriveType(root)
	if t != windows.DRIVE_REMOVABLE && t != windows.DRIVE_FIXED {
		return Medium{}, false
	}
	var (
		label  = make([]uint16, windows.MAX_PATH+1)
		fsName = make([]uint16, windows.MAX_PATH+1)
		serial uint32
	)
	if err := windows.GetVolumeInformation(root, &label[0], uint32(len(label)), &serial, nil, nil, &fsName[0], uint32(len(fsName))); err != nil {
		return Medium{}, false // e.g. a card reader with no card
	}
	desc, derr := queryDescriptor(letter)
	if t == windows.DRIVE_FIXED && (derr != nil || !removableBus(desc.BusType)) {
		return Medium{}, false
	}
	m := Medium{
		Device:     letter,
		Vendor:     desc.Vendor,
		Model:      desc.Product,
		Serial:     desc.Serial,
		Label:      windows.UTF16ToString(label),
		FSType:     windows.UTF16ToString(fsName),
		MountPoint: letter + `\`,
		Bus:        busName(desc.BusType),
		VolumeID:   fmt.Sprintf("%04X-%04X", serial>>16, serial&0xFFFF),
	}
	var total uint64
	if windows.GetDiskFreeSpaceEx(root, nil, &total, nil) == nil {
		m.SizeBytes = total
	}
	return m, true
}

// queryDescriptor asks the volume's disk for its STORAGE_DEVICE_DESCRIPTOR
// (no access rights needed beyond opening the device for query).
func queryDescriptor(letter string) (storageDescriptor, error) {
	p, _ := windows.UTF16PtrFromString(`\\.\` + letter)
	h, err := windows.CreateFile(p, 0, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, nil, windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		return storageDescriptor{}, err
	}
	defer windows.CloseHandle(h)
	// STORAGE_PROPERTY_QUERY{PropertyId: StorageDeviceProperty(0), QueryType: PropertyStandardQuery(0)}
	query := make([]byte, 12)
	buf := make([]byte, 1024)
	var n uint32
	if err := windows.DeviceIoControl(h, ioctlStorageQueryProperty, &query[0], uint32(len(query)), &buf[0], uint32(len(buf)), &n, nil); err != nil {
		return storageDescriptor{}, err
	}
	return parseStorageDescriptor(buf[:n])
}
