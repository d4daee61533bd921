package antivirus

import (
	"context"
	"time"

	"github.com/yusufpapurcu/wmi"
)

// windowsProbe reads Windows Security Center (root/SecurityCenter2,
// AntiVirusProduct: every registered product, client Windows only) and
// Microsoft Defender's own status (root/Microsoft/Windows/Defender,
// MSFT_MpComputerStatus). Decoding is in wsc.go.
type windowsProbe struct{}

func newProbe(settings) probe { return windowsProbe{} }

const (
	wscNamespace      = `root\SecurityCenter2`
	defenderNamespace = `root\Microsoft\Windows\Defender`
)

func (windowsProbe) Products(ctx context.Context) ([]Product, error) {
	var wsc []antiVirusProduct
	wscErr := wmiQuery(ctx, "SELECT * FROM AntiVirusProduct", &wsc, wscNamespace)
	var mp []mpComputerStatus
	mpErr := wmiQuery(ctx, "SELECT * FROM MSFT_MpComputerStatus", &mp, defenderNamespace)
	return windowsProducts(wsc, wscErr, mp, mpErr, time.Now())
}

// wmiQuery runs one WMI query, giving up when ctx ends (WMI calls cannot
// be cancelled: the query finishes in the background into its own copy).
// SELECT * with AllowMissingFields keeps working when a property (e.g.
// AMRunningMode) is absent on older Windows.
func wmiQuery[T any](ctx context.Context, query string, dst *[]T, namespace string) error {
	type result struct {
		rows []T
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var rows []T
		defer func() {
			if r := recover(); r != nil {
				ch <- result{err: panicError{r}}
			}
		}()
		c := &wmi.Client{AllowMissingFields: true}
		err := c.Query(query, &rows, nil, namespace)
		ch <- result{rows, err}
	}()
	select {
	case r := <-ch:
		*dst = r.rows
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
