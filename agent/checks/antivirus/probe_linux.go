package antivirus

import (
	"context"
	"fmt"
	"slices"
)

// linuxProbe: ClamAV (clamd on its socket, the daily database header on
// disk) and other products recognised by their daemon's process name.
type linuxProbe struct {
	socket, dbDir string
	procs         func(context.Context) ([]string, error)
}

func newProbe(s settings) probe {
	return linuxProbe{socket: s.clamdSocket, dbDir: s.clamDBDir, procs: processNames}
}

func (p linuxProbe) Products(ctx context.Context) ([]Product, error) {
	names, perr := p.procs(ctx)
	if perr != nil {
		perr = fmt.Errorf("list processes: %w", perr)
	}
	cv, cvErr := queryClamd(ctx, p.socket)
	db, dbErr := readClamDB(p.dbDir)
	var out []Product
	if clam, ok := clamavProduct(p.socket, cv, cvErr, db, dbErr, slices.Contains(names, "clamonacc")); ok {
		if cvErr != nil && slices.Contains(names, "clamd") {
			clam.State += " (a clamd process is running: check clamd_socket matches its LocalSocket)"
		}
		out = append(out, clam)
	}
	out = append(out, matchDaemons(names, linuxDaemons)...)
	if len(out) == 0 && perr == nil && ctx.Err() != nil {
		perr = ctx.Err()
	}
	return out, perr
}
