package bluetooth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

// rfkillDir is the rfkill class directory (a fixture tree in tests).
var rfkillDir = "/sys/class/rfkill"

// readAdapters asks BlueZ; when the system bus or bluetoothd is not there
// it falls back to rfkill.
func readAdapters(ctx context.Context) (snapshot, error) {
	as, berr := bluezAdapters(ctx)
	if berr == nil {
		return snapshot{Adapters: as, Source: "bluez"}, nil
	}
	if ctx.Err() != nil {
		return snapshot{}, ctx.Err()
	}
	as, rerr := readRfkill(rfkillDir)
	if rerr != nil {
		return snapshot{}, fmt.Errorf("BlueZ: %v; rfkill: %v", berr, rerr)
	}
	return snapshot{Adapters: as, Source: "rfkill", Note: "BlueZ not reachable: " + berr.Error()}, nil
}

// bluezAdapters reads org.bluez.Adapter1 objects from BlueZ's object
// manager on the system bus (DBUS_SYSTEM_BUS_ADDRESS or the default
// socket).
func bluezAdapters(ctx context.Context) ([]Adapter, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel() // also closes the connection (godbus watches its context)
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(cctx))
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	defer conn.Close()
	var objs managedObjects
	if err := conn.Object(bluezName, "/").CallWithContext(cctx, objectManager+".GetManagedObjects", 0).Store(&objs); err != nil {
		return nil, fmt.Errorf("BlueZ GetManagedObjects: %w", err)
	}
	return adaptersFromObjects(objs), nil
}

// watchChanges subscribes to BlueZ's adapter signals and calls notify on
// every relevant one, and once after each (re)subscription so nothing
// between a read and the subscription is missed. It reconnects with
// backoff (bluetoothd or the bus restarting) until ctx ends.
func watchChanges(ctx context.Context, notify func()) {
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		watchOnce(ctx, notify)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Minute)
	}
}

func watchOnce(ctx context.Context, notify func()) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(cctx))
	if err != nil {
		return err
	}
	defer conn.Close()
	matches := [][]dbus.MatchOption{
		{dbus.WithMatchSender(bluezName), dbus.WithMatchInterface(propertiesIface), dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchArg(0, adapterIface)},
		{dbus.WithMatchSender(bluezName), dbus.WithMatchInterface(objectManager), dbus.WithMatchMember("InterfacesAdded")},
		{dbus.WithMatchSender(bluezName), dbus.WithMatchInterface(objectManager), dbus.WithMatchMember("InterfacesRemoved")},
		{dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, bluezName)},
	}
	ch := make(chan *dbus.Signal, 64)
	conn.Signal(ch)
	for _, m := range matches {
		mctx, mcancel := context.WithTimeout(cctx, 10*time.Second)
		err := conn.AddMatchSignalContext(mctx, m...)
		mcancel()
		if err != nil {
			return err
		}
	}
	notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-ch:
			if !ok {
				return errors.New("D-Bus connection closed")
			}
			if relevantSignal(s) {
				notify()
			}
		}
	}
}
