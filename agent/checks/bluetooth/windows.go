package bluetooth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// windowsScript runs in Windows PowerShell 5.1 (which can call WinRT):
// the Bluetooth radios' state from Windows.Devices.Radios (what the
// Settings / Action Center toggle changes), and the Plug and Play devices
// of class Bluetooth as a fallback (a radio disabled in Device Manager is
// not listed by WinRT). Output is one JSON object.
const windowsScript = `$ErrorActionPreference = 'Stop'
$out = [ordered]@{ radios = @(); radioError = ''; devices = @(); deviceError = '' }
try {
  Add-Type -AssemblyName System.Runtime.WindowsRuntime
  $asTask = ([System.WindowsRuntimeSystemExtensions].GetMethods() | Where-Object { $_.Name -eq 'AsTask' -and $_.GetParameters().Count -eq 1 -and $_.GetParameters()[0].ParameterType.Name -eq 'IAsyncOperation` + "`" + `1' })[0]
  [Windows.Devices.Radios.Radio,Windows.System.Devices,ContentType=WindowsRuntime] | Out-Null
  $task = $asTask.MakeGenericMethod([System.Collections.Generic.IReadOnlyList[Windows.Devices.Radios.Radio]]).Invoke($null, @([Windows.Devices.Radios.Radio]::GetRadiosAsync()))
  if (-not $task.Wait(10000)) { throw 'GetRadiosAsync timed out' }
  $out.radios = @($task.Result | Where-Object { [string]$_.Kind -eq 'Bluetooth' } | ForEach-Object { [ordered]@{ Name = [string]$_.Name; Kind = [string]$_.Kind; State = [string]$_.State } })
} catch { $out.radioError = [string]$_ }
try {
  $out.devices = @(Get-PnpDevice -Class Bluetooth -ErrorAction Stop | ForEach-Object { [ordered]@{ FriendlyName = [string]$_.FriendlyName; InstanceId = [string]$_.InstanceId; Status = [string]$_.Status; Present = [bool]$_.Present; Problem = [string]$_.Problem } })
} catch { $out.deviceError = [string]$_ }
$out | ConvertTo-Json -Depth 4 -Compress
`

type winRadio struct {
	Name  string `json:"Name"`
	Kind  string `json:"Kind"`
	State any    `json:"State"` // "On"/"Off"/"Disabled"/"Unknown" (or the enum number)
}

type winDevice struct {
	FriendlyName string `json:"FriendlyName"`
	InstanceID   string `json:"InstanceId"`
	Status       string `json:"Status"`
	Present      bool   `json:"Present"`
	Problem      any    `json:"Problem"`
}

// oneOrMany decodes a JSON array or a single object (ConvertTo-Json
// unwraps one-element arrays in some places).
func oneOrMany[T any](raw json.RawMessage) ([]T, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '{' {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return []T{v}, nil
	}
	var vs []T
	err := json.Unmarshal(raw, &vs)
	return vs, err
}

// radioState maps Windows.Devices.Radios.RadioState (name or number).
func radioState(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case float64:
		switch int(s) {
		case 1:
			return "On"
		case 2:
			return "Off"
		case 3:
			return "Disabled"
		}
	}
	return "Unknown"
}

// nonRadioPrefixes are PnP instance-id prefixes of class-Bluetooth devices
// that are not the radio itself: paired remote devices, protocol
// enumerators and software devices.
var nonRadioPrefixes = []string{`BTHENUM\`, `BTHLE\`, `BTHLEDEVICE\`, `BTHHFENUM\`, `BTH\`, `SWD\`, `ROOT\`, `BTHMODEM\`, `BTHPAN\`}

func isRadioDevice(d winDevice) bool {
	id := strings.ToUpper(d.InstanceID)
	if id == "" || !d.Present {
		return false
	}
	for _, p := range nonRadioPrefixes {
		if strings.HasPrefix(id, p) {
			return false
		}
	}
	return true
}

// parseWindows reads windowsScript's output. WinRT radios are preferred
// (they follow the user's Bluetooth toggle); without them the PnP radio
// devices count as powered when their status is OK (enabled, driver
// loaded). Neither tells whether the PC is discoverable.
func parseWindows(data []byte) (snapshot, error) {
	var doc struct {
		Radios      json.RawMessage `json:"radios"`
		RadioError  string          `json:"radioError"`
		Devices     json.RawMessage `json:"devices"`
		DeviceError string          `json:"deviceError"`
	}
	if err := json.Unmarshal(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), &doc); err != nil {
		return snapshot{}, fmt.Errorf("bluetooth state script output: %w", err)
	}
	radios, err := oneOrMany[winRadio](doc.Radios)
	if err != nil {
		return snapshot{}, fmt.Errorf("bluetooth radios: %w", err)
	}
	devices, err := oneOrMany[winDevice](doc.Devices)
	if err != nil {
		return snapshot{}, fmt.Errorf("bluetooth devices: %w", err)
	}
	if len(radios) > 0 {
		s := snapshot{Source: "winrt"}
		for i, r := range radios {
			st := radioState(r.State)
			s.Adapters = append(s.Adapters, Adapter{
				ID:      fmt.Sprintf("radio%d", i),
				Name:    r.Name,
				Powered: st == "On",
				Source:  "winrt",
				Extra:   map[string]any{"radio_state": st},
			})
		}
		return s, nil
	}
	noDevices := doc.DeviceError == "" || strings.Contains(strings.ToLower(doc.DeviceError), "no matching")
	if doc.RadioError != "" && !noDevices {
		return snapshot{}, fmt.Errorf("bluetooth radios: %s; PnP devices: %s", doc.RadioError, doc.DeviceError)
	}
	s := snapshot{Source: "pnp"}
	if doc.RadioError != "" {
		s.Note = "WinRT radios unavailable: " + doc.RadioError
	}
	for _, d := range devices {
		if !isRadioDevice(d) {
			continue
		}
		s.Adapters = append(s.Adapters, Adapter{
			ID:      d.InstanceID,
			Name:    d.FriendlyName,
			Powered: strings.EqualFold(d.Status, "OK"),
			Source:  "pnp",
			Extra:   map[string]any{"pnp_status": d.Status, "pnp_problem": fmt.Sprint(d.Problem)},
		})
	}
	return s, nil
}
