package removable

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// parsePlist decodes an XML property list (as `diskutil info -plist`
// prints) into Go values: map[string]any, []any, string, int64, float64,
// bool, []byte (data is kept as its base64 text). Depth and size are
// bounded: the input comes from a local tool, but never panic on it.
func parsePlist(data []byte) (any, error) {
	if len(data) > 4<<20 {
		return nil, errors.New("plist too large")
	}
	d := xml.NewDecoder(strings.NewReader(string(data)))
	d.Strict = false
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("plist: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local == "plist" {
				continue
			}
			return plistValue(d, se, 0)
		}
	}
}

func plistValue(d *xml.Decoder, se xml.StartElement, depth int) (any, error) {
	if depth > 32 {
		return nil, errors.New("plist nested too deeply")
	}
	switch se.Name.Local {
	case "dict":
		m := map[string]any{}
		key := ""
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, fmt.Errorf("plist dict: %w", err)
			}
			switch t := tok.(type) {
			case xml.EndElement:
				return m, nil
			case xml.StartElement:
				if t.Name.Local == "key" {
					if key, err = text(d); err != nil {
						return nil, err
					}
					continue
				}
				v, err := plistValue(d, t, depth+1)
				if err != nil {
					return nil, err
				}
				m[key] = v
			}
		}
	case "array":
		var a []any
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, fmt.Errorf("plist array: %w", err)
			}
			switch t := tok.(type) {
			case xml.EndElement:
				return a, nil
			case xml.StartElement:
				v, err := plistValue(d, t, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
		}
	case "true", "false":
		if err := d.Skip(); err != nil {
			return nil, err
		}
		return se.Name.Local == "true", nil
	case "integer":
		s, err := text(d)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			u, uerr := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if uerr != nil {
				return nil, fmt.Errorf("plist integer %q", s)
			}
			return float64(u), nil
		}
		return n, nil
	case "real":
		s, err := text(d)
		if err != nil {
			return nil, err
		}
		return strconv.ParseFloat(strings.TrimSpace(s), 64)
	default: // string, date, data
		return text(d)
	}
}

// text reads character data up to the end of the current element.
func text(d *xml.Decoder) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return "", errors.New("plist: unexpected end")
		}
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.EndElement:
			return b.String(), nil
		case xml.StartElement:
			if err := d.Skip(); err != nil {
				return "", err
			}
		}
	}
}

// diskInfo is the part of `diskutil info -plist` the check uses.
type diskInfo struct {
	DeviceIdentifier string
	ParentWholeDisk  string
	VolumeName       string
	MountPoint       string
	FSType           string
	MediaName        string
	BusProtocol      string
	VolumeUUID       string
	DiskUUID         string
	Size             uint64
	Internal         bool
	Ejectable        bool
	Removable        bool
}

func parseDiskutil(data []byte) (diskInfo, error) {
	v, err := parsePlist(data)
	if err != nil {
		return diskInfo{}, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return diskInfo{}, errors.New("diskutil: plist is not a dict")
	}
	s := func(k string) string { x, _ := m[k].(string); return x }
	b := func(k string) bool { x, _ := m[k].(bool); return x }
	n := func(k string) uint64 {
		switch x := m[k].(type) {
		case int64:
			if x > 0 {
				return uint64(x)
			}
		case float64:
			return uint64(x)
		}
		return 0
	}
	di := diskInfo{
		DeviceIdentifier: s("DeviceIdentifier"),
		ParentWholeDisk:  s("ParentWholeDisk"),
		VolumeName:       s("VolumeName"),
		MountPoint:       s("MountPoint"),
		FSType:           s("FilesystemType"),
		MediaName:        s("MediaName"),
		BusProtocol:      s("BusProtocol"),
		VolumeUUID:       s("VolumeUUID"),
		DiskUUID:         s("DiskUUID"),
		Size:             n("TotalSize"),
		Internal:         b("Internal"),
		Ejectable:        b("Ejectable"),
		Removable:        b("RemovableMedia") || b("Removable") || b("RemovableMediaOrExternalDevice"),
	}
	if di.Size == 0 {
		di.Size = n("Size")
	}
	if di.DeviceIdentifier == "" {
		return di, errors.New("diskutil: no DeviceIdentifier")
	}
	return di, nil
}

// macMedium decides whether a volume is removable storage: external or
// ejectable media on a physical bus (not a disk image, not the network).
// parent is the whole disk's info (for the product name), may be zero.
func macMedium(v, parent diskInfo) (Medium, bool) {
	if strings.EqualFold(v.BusProtocol, "Disk Image") || strings.EqualFold(v.BusProtocol, "Virtual Interface") {
		return Medium{}, false
	}
	if v.Internal && !v.Removable && !v.Ejectable {
		return Medium{}, false
	}
	m := Medium{
		Device:     v.DeviceIdentifier,
		Label:      v.VolumeName,
		MountPoint: v.MountPoint,
		FSType:     v.FSType,
		SizeBytes:  v.Size,
		Bus:        strings.ToLower(v.BusProtocol),
		VolumeID:   v.VolumeUUID,
	}
	if m.VolumeID == "" {
		m.VolumeID = v.DiskUUID
	}
	name := parent.MediaName
	if name == "" {
		name = v.MediaName
	}
	// MediaName is "<vendor> <model>" (e.g. "SanDisk Ultra"); split once
	// so allow-list vendor/model globs work.
	if vendor, model, ok := strings.Cut(strings.TrimSpace(name), " "); ok {
		m.Vendor, m.Model = vendor, strings.TrimSpace(model)
	} else {
		m.Model = name
	}
	m.AltModel = strings.TrimSpace(name)
	if i := strings.LastIndexByte(v.DeviceIdentifier, 's'); i > 4 {
		m.Part = v.DeviceIdentifier[i+1:]
	}
	return m, true
}
