package removable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
)

// storageDescriptor is the part of Windows' STORAGE_DEVICE_DESCRIPTOR
// (IOCTL_STORAGE_QUERY_PROPERTY, StorageDeviceProperty) the check uses.
type storageDescriptor struct {
	Removable bool
	BusType   uint32
	Vendor    string
	Product   string
	Serial    string
}

// STORAGE_BUS_TYPE values.
const (
	busType1394 = 0x4
	busTypeUsb  = 0x7
	busTypeSd   = 0xC
	busTypeMmc  = 0xD
)

func busName(t uint32) string {
	switch t {
	case busType1394:
		return "firewire"
	case busTypeUsb:
		return "usb"
	case busTypeSd:
		return "sd"
	case busTypeMmc:
		return "mmc"
	case 0x1:
		return "scsi"
	case 0x3:
		return "ata"
	case 0xB:
		return "sata"
	case 0x11:
		return "nvme"
	case 0xE:
		return "virtual"
	}
	return ""
}

// parseStorageDescriptor decodes STORAGE_DEVICE_DESCRIPTOR:
//
//	0 Version, 4 Size (DWORD); 8 DeviceType, 9 DeviceTypeModifier,
//	10 RemovableMedia, 11 CommandQueueing (BYTE); 12 VendorIdOffset,
//	16 ProductIdOffset, 20 ProductRevisionOffset, 24 SerialNumberOffset,
//	28 BusType, 32 RawPropertiesLength (DWORD)
//
// String offsets point at NUL-terminated ASCII within the buffer; 0 means
// absent.
func parseStorageDescriptor(b []byte) (storageDescriptor, error) {
	if len(b) < 36 {
		return storageDescriptor{}, errors.New("storage descriptor too short")
	}
	size := int(binary.LittleEndian.Uint32(b[4:]))
	if size > 0 && size < len(b) {
		b = b[:size]
	}
	str := func(off uint32) string {
		if off == 0 || off == 0xFFFFFFFF || int(off) >= len(b) {
			return ""
		}
		s := b[off:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return strings.TrimSpace(strings.ToValidUTF8(string(s), ""))
	}
	le := binary.LittleEndian
	return storageDescriptor{
		Removable: b[10] != 0,
		BusType:   le.Uint32(b[28:]),
		Vendor:    str(le.Uint32(b[12:])),
		Product:   str(le.Uint32(b[16:])),
		Serial:    str(le.Uint32(b[24:])),
	}, nil
}

// removableBus reports whether a bus type is removable storage even when
// Windows calls the drive fixed (USB disks and SSDs).
func removableBus(t uint32) bool {
	switch t {
	case busTypeUsb, busTypeSd, busTypeMmc, busType1394:
		return true
	}
	return false
}
