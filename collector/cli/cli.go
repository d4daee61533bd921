// Package cli is the vigil-collector command line: `serve` runs the
// collector; the other commands talk to a running one over its admin socket.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/cliexit"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	"github.com/vigil-safeguarding/vigil/internal/version"
)

const usage = `vigil-collector: stores findings from Vigil agents

  serve          --data DIR [--grpc-listen ADDR] [--http-listen ADDR] [--retention cat=30d,...]
                 [--smtp HOST:PORT --smtp-from ADDR --notify-severity high --escalate-after 30m --console-url URL]
                 [--working-hours "mon-fri 08:00-17:00" --timezone Europe/London --out-of-hours-users U1,U2]
                 [--oidc-issuer URL --oidc-client-id ID --oidc-client-secret-file F [--oidc-redirect-url URL]
                  [--oidc-name NAME] [--oidc-allowed-domain DOMAIN|TENANT]]   (sign-in with Google / Entra ID)
                 [--max-agent-conns N --max-unauth-conns N --max-unauth-per-source N] [--metrics-token-file F]
                 [--http-cert F --http-key F] [--trusted-proxy CIDR,...] [--http-tls=false (loopback only)]
                 (the console is HTTPS; by default with a certificate from the collector's CA)
                 [--agent-address HOST:PORT] [--agent-dir DIR]   (console Deploy page: packages' collector address, agent builds)
                 [--ingest direct|jetstream [--nats URL,... --nats-replicas 3 --nats-tls DIR]]   (docs/scale.md)
  nats-node      --data DIR --name N [--listen HOST:PORT] [--cluster NAME --cluster-listen HOST:PORT --routes A,B,C]
                 [--tls DIR]   (one JetStream cluster node, fsync on every write; loopback only without --tls)
  nats-cert      --data DIR --name N --out DIR [--hosts H1,H2]   (a bus member's mutual-TLS certificate from
                 the bus CA, for nats-node --tls and frontend/serve --nats-tls)
  frontend       --data DIR --nats URL,... [--nats-tls DIR] [--grpc-listen ADDR]   (stateless agent-stream front-end;
                 DIR holds a copy of the storer's pki/ca.pem, server.pem, server.key; rules come over the bus;
                 devices enroll at the storer)
  school add     --data DIR --name NAME [--id ID]   (a school of the trust; devices, tokens and accounts belong to one)
  school list    --data DIR [--json]          (the default school holds everything that names no school)
  school export  --data DIR --school NAME --out FILE [--evidence-key FILE --reason R]
                 (everything the school owns, JSON Lines, and its evidence key; in the access log)
  school delete  --data DIR --school NAME --confirm ID --reason TEXT   (a school leaving the trust: everything it owns removed, nothing else touched)
  school retention --data DIR --school NAME (--retention cat=30d,default=365d | --clear) --reason TEXT   (the school's own retention of its findings)
  school hours   --data DIR --school NAME (--working-hours "mon-fri 08:30-15:30" [--timezone TZ] | --clear) --reason TEXT   (the school's own hours: absent devices, out-of-hours alerts)
  school on-call --data DIR --school NAME (--users U1,U2 | --clear) --reason TEXT   (the school's own staff e-mailed first out of hours)
  school rules   --data DIR --school NAME [--from DIR | --clear] [--reason TEXT]   (show, or replace with a folder's files once they
                 validate over every group's pack, or remove, the school's rules overrides)
  school mail    --data DIR --school NAME (--relay HOST:PORT --from ADDRESS | --clear) --reason TEXT   (the school's own relay and sender for its alert e-mails)
  token create   --data DIR --group NAME [--school NAME] [--ttl 24h] [--uses N]
  token list     --data DIR [--json]
  token revoke   --data DIR --id ID [--reason TEXT]  (no further enrollments with it; enrolled devices keep working)
  package        --data DIR --group NAME --format deb|rpm|msi --collector-address HOST:PORT [--school NAME]
                 [--arch amd64|arm64] [--out FILE] [--agent-binary FILE] [--version X.Y.Z] [--uses 2000] [--ttl 8760h]
                 (an agent package pre-configured for the group: address, CA pin, a new group token)
  release add    --data DIR --file BIN --version V [--os linux|windows|darwin] [--arch amd64|arm64] [--key FILE]
                 (signs with the release key; the collector may be stopped)
  release list   --data DIR [--json]
  release rollout  --data DIR --group G --version V [--percent N]   (offer V to the group's agents)
  release rollback --data DIR --group G                             (back to the group's previous rollout)
  release status   --data DIR --group G [--json]                    (which devices run which version)
  release minimum  --data DIR --version X.Y.Z                       (no rollout or rollback below it)
  findings list  --data DIR [--device ID] [--school NAME] [--since RFC3339] [--limit N] [--json]
  devices list   --data DIR [--json]
  devices coverage --data DIR [--json]            each device's coverage state (stopped, uninstalled, crash loop, silent, ...) and why
  devices coverage ack --data DIR --device ID     acknowledge a device's coverage alarm (no escalation)
  devices revoke --data DIR --device ID [--reason TEXT]   (lost or stolen device: its key is refused, even with a new token)
  devices unrevoke --data DIR --device ID --reason TEXT   (lift a revocation; recorded in the access log)
  devices dispose --data DIR --device ID --authorised-by NAME --personal-data TEXT|none --method HOW [--wiped HOW]
                 [--licences-verified] [--date YYYY-MM-DD] [--receipt REF] [--pat-certificate REF] [--notes TEXT]
                 (seed 000 §4.13 disposal record; the device is revoked and stays in the inventory)
  inventory list --data DIR [--json]         (every device ever enrolled: last seen, last audit, disposal)
  licences import --data DIR FILE.csv        (columns product,publisher,seats,expiry,reference; all rows or none)
  licences list  --data DIR [--json]
  licences add   --data DIR --product P --seats N [--publisher P] [--expiry YYYY-MM-DD] [--reference R]
  licences update --data DIR --id ID [--product P] [--seats N] [--publisher P] [--expiry YYYY-MM-DD|none] [--reference R]
  licences remove --data DIR --id ID
  licences reconcile --data DIR [--json] [--matches]   (per product: purchased, installed, over quota, unused, expired; unlicensed)
  licences alias --data DIR --title TITLE (--licence ID | --ignore)   (correct the matching of an installed title)
  licences unalias --data DIR --title TITLE
  agent request  --data DIR --device ID --kind KIND [--param k=v ...] [--timeout 30s]
  audit request  --data DIR (--device ID | --group NAME | --all) --reason TEXT [--expiry 168h] [--wait 10m] [--by NAME]
                 (progress on stderr until every connected device answered; then the audit ID on stdout)
  audit show     --data DIR ID [--json]      (record: scope, requester, reason, hash, every device's answer, changes)
  audit list     --data DIR [--json]
  audit sign     --data DIR ID --by NAME [--note TEXT]   (sign-off: recorded as one more link; the record is not changed)
  audit verify   --data DIR ID | --file EXPORT.json       (checks the hash chain; exit 1 when it does not verify)
  audit export   --data DIR ID [--out FILE]  (the hash chain, verifiable anywhere with audit verify --file)
  dfe roles      --data DIR [--senior-leader NAME] [--governor NAME] [--dsl NAME] [--it-provider NAME]
                 [--ROLE-contact TEXT] [--json]   (the DfE roles register; no names: show it; "-" clears a role)
  dfe review add --data DIR --date YYYY-MM-DD --attendee NAME... --findings TEXT [--action TEXT...] [--next YYYY-MM-DD]
  dfe review list --data DIR [--json]         (the annual review records and when the next is due)
  dfe check      --data DIR [--reason TEXT] [--wait 10m]   (fleet-wide end-to-end selftest; progress on stderr, ID on stdout)
  dfe check show --data DIR ID [--json]      (per device: working, session helper missing, not connected..., last proved)
  dfe pack       --data DIR [--format pdf|csv|json] [--out FILE] [--from YYYY-MM-DD] [--to YYYY-MM-DD]
                 (the DfE filtering and monitoring evidence pack)
  evidence get   --data DIR --device ID --id EVIDENCE --reason TEXT --out FILE [--as USER]   (decrypts; the view is logged)
  access-log     --data DIR [--json]
  user add       --data DIR --username U --role ROLE --password-file F [--display-name N] [--email A] [--chair] [--totp]
                 [--must-change-password] [--school NAME]   (roles: dsl, headteacher, technician, governor, admin; F may be - for stdin)
  user grant     --data DIR --username U --school NAME --reason TEXT   (trust lead: a dsl, technician or governor (not chair) account sees that school too; in the access log)
  user ungrant   --data DIR --username U --school NAME --reason TEXT
  user list      --data DIR [--json]          (role, state, last sign-in, pending password change)
  user disable   --data DIR --username U      (every session of U ends at once)
  user enable    --data DIR --username U
  user reset     --data DIR --username U [--password-file F]
                 (new password, generated and printed unless F is given; U must change it at the next sign-in)
  people import  --data DIR [--skip-bad] FILE.csv   (MIS export: username, display_name|name, role pupil|staff|headteacher, year|class)
  store rotate-key --data DIR                 (collector stopped) new master key for encryption at rest
  version
`

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") && cmd != "serve" && cmd != "nats-node" && cmd != "frontend" && cmd != "access-log" && cmd != "package" {
		cmd += " " + args[1]
		args = args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args[1:], stderr)
	case "nats-node":
		err = natsNode(args[1:], stderr)
	case "frontend":
		err = frontendCmd(args[1:], stderr)
	case "nats-cert":
		err = natsCert(args[1:], stdout)
	case "token create":
		err = tokenCreate(args[1:], stdout)
	case "token list":
		err = tokenList(args[1:], stdout)
	case "token revoke":
		err = tokenRevoke(args[1:], stdout)
	case "package":
		err = packageCmd(args[1:], stdout)
	case "release add":
		err = releaseAdd(args[1:], stdout)
	case "release list":
		err = releaseList(args[1:], stdout)
	case "release rollout":
		err = releaseRollout(args[1:], stdout)
	case "release rollback":
		err = releaseRollback(args[1:], stdout)
	case "release status":
		err = releaseStatus(args[1:], stdout)
	case "release minimum":
		err = releaseMinimum(args[1:], stdout)
	case "findings list":
		err = findingsList(args[1:], stdout)
	case "devices list":
		err = devicesList(args[1:], stdout)
	case "devices coverage":
		if len(args) > 1 && args[1] == "ack" {
			err = coverageAck(args[2:], stdout)
		} else {
			err = devicesCoverage(args[1:], stdout)
		}
	case "devices revoke":
		err = devicesRevoke(args[1:], stdout)
	case "devices unrevoke":
		err = devicesUnrevoke(args[1:], stdout)
	case "agent request":
		err = agentRequest(args[1:], stdout)
	case "audit request":
		err = auditRequestCmd(args[1:], stdout, stderr)
	case "audit show":
		err = auditShowCmd(args[1:], stdout)
	case "audit list":
		err = auditListCmd(args[1:], stdout)
	case "audit sign":
		err = auditSignCmd(args[1:], stdout)
	case "audit verify":
		err = auditVerifyCmd(args[1:], stdout)
	case "audit export":
		err = auditExportCmd(args[1:], stdout)
	case "dfe roles", "dfe review", "dfe check", "dfe pack":
		err = dfeCmd(cmd, args[1:], stdout, stderr)
	case "evidence get":
		err = evidenceGet(args[1:], stdout)
	case "access-log":
		err = accessLogCmd(args[1:], stdout)
	case "licences import", "licences list", "licences add", "licences update", "licences remove",
		"licences reconcile", "licences alias", "licences unalias", "inventory list", "devices dispose":
		err = licencesCmd(cmd, args[1:], stdout)
	case "school add":
		err = schoolAdd(args[1:], stdout)
	case "school list":
		err = schoolList(args[1:], stdout)
	case "school export":
		err = schoolExport(args[1:], stdout)
	case "school delete":
		err = schoolDelete(args[1:], stdout)
	case "school retention":
		err = schoolRetention(args[1:], stdout)
	case "school hours":
		err = schoolHours(args[1:], stdout)
	case "school on-call":
		err = schoolOnCall(args[1:], stdout)
	case "school mail":
		err = schoolMail(args[1:], stdout)
	case "school rules":
		err = schoolRules(args[1:], stdout)
	case "user grant":
		err = userGrant(args[1:], stdout, true)
	case "user ungrant":
		err = userGrant(args[1:], stdout, false)
	case "user add":
		err = userAdd(args[1:], stdout)
	case "user list":
		err = userList(args[1:], stdout)
	case "user disable":
		err = userSetDisabled(args[1:], stdout, true)
	case "user enable":
		err = userSetDisabled(args[1:], stdout, false)
	case "user reset":
		err = userReset(args[1:], stdout)
	case "people import":
		err = peopleImport(args[1:], stdout)
	case "store rotate-key":
		err = rotateKey(args[1:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	return cliexit.Code(stderr, "vigil-collector", cmd, err)
}

// dataFlags starts a command's flags with --data, which every command needs.
func dataFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return fs, fs.String("data", "", "collector data directory (CA, keys, Badger store, admin socket)")
}

// parse parses the flags and insists on --data.
func parse(fs *flag.FlagSet, args []string, data *string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return needData(*data)
}

func needData(data string) error {
	if data == "" {
		return errors.New("--data DIR is required")
	}
	return nil
}

func serve(args []string, stderr io.Writer) error {
	fs, data := dataFlags("serve")
	grpcAddr := fs.String("grpc-listen", "127.0.0.1:7443", "address for agents (gRPC, TLS)")
	httpAddr := fs.String("http-listen", "127.0.0.1:7080", "address for the web console and health (HTTPS)")
	httpCert := fs.String("http-cert", "", "PEM certificate (chain) for the console's HTTPS; with --http-key (default: one issued by the collector's CA, DATA/pki/console.pem)")
	httpKey := fs.String("http-key", "", "PEM private key for --http-cert")
	httpTLS := fs.Bool("http-tls", true, "serve the console over HTTPS; false only on a loopback --http-listen behind a TLS proxy on the same host")
	trustedProxy := fs.String("trusted-proxy", "", "comma-separated CIDR ranges of reverse proxies whose X-Forwarded-For/X-Forwarded-Proto are believed (none when empty)")
	names := fs.String("server-names", "", "comma-separated extra DNS names/IPs for the agent-port certificate (first start only) and the console certificate (every start)")
	agentAddr := fs.String("agent-address", "", "HOST:PORT devices reach gRPC at, for packages downloaded from the console (default: first --server-names entry with the gRPC port)")
	agentDir := fs.String("agent-dir", "", "directory of agent builds (OS-ARCH/vigil-agent[.exe], as `make cross` writes dist/) for console package downloads (default: dist/ next to this collector)")
	encrypt := fs.Bool("encrypt", true, "encrypt the store at rest (key in DATA/keys/store.key)")
	retention := fs.String("retention", "selftest=30d,default=400d", "retention per finding category; 'default' for the rest, 0 keeps forever")
	heartbeat := fs.Duration("heartbeat", 60*time.Second, "heartbeat interval asked of agents")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	diskReserve := fs.Int64("disk-reserve-mb", 256, "stop accepting findings (agents keep them) when the data dir's filesystem has less free space than this; resume when it is back")
	verifyEvery := fs.Duration("verify-interval", 24*time.Hour, "verify every store table's checksums this often (also at start; negative: only at start)")
	smtpAddr := fs.String("smtp", "", "mail relay HOST:PORT for console notifications (off when empty)")
	smtpFrom := fs.String("smtp-from", "vigil@localhost", "sender address of notifications")
	notifySev := fs.String("notify-severity", "high", "e-mail alerts at or above this severity")
	escalate := fs.Duration("escalate-after", 30*time.Minute, "pass an unacknowledged alert to the next person after this long (0: never)")
	consoleURL := fs.String("console-url", "", "the console's address in e-mailed links (default https://<http-listen>)")
	workingHours := fs.String("working-hours", "mon-fri 08:00-17:00", `school hours for notifications, e.g. "mon-thu 08:00-17:00, fri 08:00-15:30"`)
	timezone := fs.String("timezone", "Europe/London", "the school's time zone for --working-hours")
	oohUsers := fs.String("out-of-hours-users", "", "comma-separated console users on call: outside --working-hours new alerts are e-mailed to them first (off when empty)")
	oidcIssuer := fs.String("oidc-issuer", "", "OpenID Connect issuer for console sign-in: https://accounts.google.com or https://login.microsoftonline.com/TENANT/v2.0 (off when empty)")
	oidcClientID := fs.String("oidc-client-id", "", "OAuth client ID registered with the issuer")
	oidcSecretFile := fs.String("oidc-client-secret-file", "", "file holding the OAuth client secret")
	oidcRedirect := fs.String("oidc-redirect-url", "", "callback registered with the issuer (default <console-url>/api/v1/oidc/callback)")
	oidcName := fs.String("oidc-name", "", `provider name on the login button, "Sign in with NAME" (default Google or Microsoft from the issuer)`)
	oidcDomain := fs.String("oidc-allowed-domain", "", "only accept ID tokens with this Google Workspace domain (hd) or Entra ID tenant ID (tid)")
	maxConns := fs.Int("max-agent-conns", 0, "cap on connections to the agent port (0: the file descriptor limit less a reserve for the store)")
	maxUnauth := fs.Int("max-unauth-conns", 0, "cap on agent-port connections without a client certificate (0: min(2048, cap/4))")
	maxUnauthSrc := fs.Int("max-unauth-per-source", 0, "cap on those per source address (0: 128)")
	debugListen := fs.String("debug-listen", "", "loopback HOST:PORT serving Go's /debug/pprof/ profiles, for measuring memory per agent (off when empty; refused on a non-loopback address)")
	grpcBuffers := fs.String("grpc-buffers", "lean", "per-connection buffers on the agent port: lean (no read buffer, pooled write buffer) or grpc-default (32 KiB each, per connection; for comparison)")
	ingest := fs.String("ingest", daemon.IngestDirect, "how agents' findings reach the store: direct (committed to Badger before the ack) or jetstream (acknowledged once an embedded JetStream has fsynced them; a storer drains them into Badger)")
	natsURLs := fs.String("nats", "", "with --ingest jetstream: comma-separated nats://HOST:PORT of an external JetStream cluster (vigil-collector nats-node) instead of the embedded server; device records are then mirrored there for front-ends")
	natsReplicas := fs.Int("nats-replicas", 3, "with --nats: replication of the findings stream and the devices bucket")
	natsTLS := fs.String("nats-tls", "", "with --nats: folder from `vigil-collector nats-cert`, to connect to the nodes with mutual TLS (required for nodes off this machine)")
	metricsTokenFile := fs.String("metrics-token-file", "", "file holding a bearer token that GET /metrics then requires (open when empty)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	var metricsToken string
	if *metricsTokenFile != "" {
		b, err := os.ReadFile(*metricsTokenFile)
		if err != nil {
			return fmt.Errorf("--metrics-token-file: %w", err)
		}
		if metricsToken = strings.TrimSpace(string(b)); metricsToken == "" {
			return fmt.Errorf("--metrics-token-file %s is empty", *metricsTokenFile)
		}
	}
	var oidcSecret string
	if *oidcIssuer != "" {
		if *oidcClientID == "" || *oidcSecretFile == "" {
			return errors.New("--oidc-issuer needs --oidc-client-id and --oidc-client-secret-file")
		}
		b, err := os.ReadFile(*oidcSecretFile)
		if err != nil {
			return fmt.Errorf("--oidc-client-secret-file: %w", err)
		}
		if oidcSecret = strings.TrimSpace(string(b)); oidcSecret == "" {
			return fmt.Errorf("--oidc-client-secret-file %s is empty", *oidcSecretFile)
		}
	}
	ret, def, err := ParseRetention(*retention)
	if err != nil {
		return err
	}
	proxies, err := console.ParseTrustedProxies(*trustedProxy)
	if err != nil {
		return fmt.Errorf("--trusted-proxy: %w", err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var extra []string
	if *names != "" {
		extra = strings.Split(*names, ",")
	}
	transport, err := server.TransportByName(*grpcBuffers)
	if err != nil {
		return fmt.Errorf("--grpc-buffers: %w", err)
	}
	natsTLSCfg, err := loadBusTLS(*natsTLS)
	if err != nil {
		return fmt.Errorf("--nats-tls: %w", err)
	}
	if natsTLSCfg != nil && len(splitList(*natsURLs)) == 0 {
		return errors.New("--nats-tls is for an external JetStream cluster: give --nats too")
	}
	if *debugListen != "" {
		stopDebug, err := serveDebug(*debugListen, log)
		if err != nil {
			return fmt.Errorf("--debug-listen: %w", err)
		}
		defer stopDebug()
	}
	return daemon.Serve(ctx, daemon.Config{
		DataDir: *data, GRPCListen: *grpcAddr, HTTPListen: *httpAddr, ServerNames: extra, AgentAddress: *agentAddr, AgentDir: *agentDir,
		Encrypt: *encrypt, Retention: ret, DefaultRetention: def, Heartbeat: *heartbeat, Logger: log,
		SMTP: *smtpAddr, SMTPFrom: *smtpFrom, NotifySeverity: *notifySev, EscalateAfter: *escalate, ConsoleURL: *consoleURL,
		WorkingHours: *workingHours, Timezone: *timezone, OutOfHoursUsers: splitList(*oohUsers),
		OIDCIssuer: *oidcIssuer, OIDCClientID: *oidcClientID, OIDCClientSecret: oidcSecret, OIDCRedirectURL: *oidcRedirect,
		OIDCName: *oidcName, OIDCAllowedDomain: *oidcDomain,
		DiskReserve: *diskReserve << 20, VerifyInterval: *verifyEvery,
		MaxConns: *maxConns, MaxUnauthConns: *maxUnauth, MaxUnauthPerSource: *maxUnauthSrc, MetricsToken: metricsToken,
		Transport: &transport, Ingest: *ingest, NATS: splitList(*natsURLs), NATSReplicas: *natsReplicas, NATSTLS: natsTLSCfg,
		HTTPCertFile: *httpCert, HTTPKeyFile: *httpKey, HTTPPlain: !*httpTLS, TrustedProxies: proxies,
	})
}

// splitList reads "a, b,,c" as [a b c].
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// ParseRetention reads "cat=30d,other=12h,default=400d".
func ParseRetention(s string) (map[string]time.Duration, time.Duration, error) {
	out := map[string]time.Duration{}
	var def time.Duration
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, 0, fmt.Errorf("--retention: %q is not category=duration", part)
		}
		d, err := parseDays(v)
		if err != nil {
			return nil, 0, fmt.Errorf("--retention %s: %w", k, err)
		}
		if k == "default" {
			def = d
		} else {
			out[k] = d
		}
	}
	return out, def, nil
}

func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("bad day count %q", v)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

func tokenCreate(args []string, stdout io.Writer) error {
	fs, data := dataFlags("token create")
	group := fs.String("group", "", "device group the token enrolls into")
	school := fs.String("school", "", "school (ID or name) a device enrolled with the token lands in (default: the default school)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid")
	uses := fs.Int("uses", 1, "how many devices may enroll with it")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *group == "" {
		return errors.New("--group NAME is required")
	}
	if *uses < 1 {
		return errors.New("--uses must be at least 1")
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "POST", "/v1/tokens", admin.TokenRequest{School: *school, Group: *group, TTL: *ttl, Uses: *uses})
	if err != nil {
		return err
	}
	defer body.Close()
	var resp admin.TokenResponse
	if err := json.NewDecoder(body).Decode(&resp); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintln(stdout, resp.Token)
	return nil
}

func findingsList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("findings list")
	device := fs.String("device", "", "only this device")
	school := fs.String("school", "", "only the devices of this school (ID or name)")
	since := fs.String("since", "", "only findings observed at or after this RFC3339 time")
	limit := fs.Int("limit", 0, "at most this many (0: all)")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	q := "?" + url.Values{"device": {*device}, "school": {*school}, "since": {*since}, "limit": {strconv.Itoa(*limit)}}.Encode()
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/findings"+q, nil)
	if err != nil {
		return err
	}
	defer body.Close()
	if *asJSON {
		_, err = io.Copy(stdout, body)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tDEVICE\tSEQ\tSEVERITY\tCHECK\tRULE\tMESSAGE")
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var f findings.JSON
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", f.Time, f.DeviceID, f.Seq, f.Severity, f.Check, f.RuleID, f.Message)
	}
	tw.Flush()
	return sc.Err()
}

func devicesList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("devices list")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/devices", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	var devs []store.Device
	if err := json.NewDecoder(body).Decode(&devs); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range devs {
			enc.Encode(d)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tGROUP\tHOSTNAME\tCONNECTED\tLAST SEEN\tVERSION\tSPOOL")
	for _, d := range devs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%d\n", d.DeviceID, d.Group, d.Hostname, d.Connected, d.LastSeen.Format(time.RFC3339), d.AgentVersion, d.SpoolDepth)
	}
	return tw.Flush()
}

func devicesCoverage(args []string, stdout io.Writer) error {
	fs, data := dataFlags("devices coverage")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/coverage", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	var reps []coverage.Report
	if err := json.NewDecoder(body).Decode(&reps); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range reps {
			enc.Encode(r)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tHOSTNAME\tSTATE\tALARM\tWHY")
	for _, r := range reps {
		alarm := "-"
		switch {
		case r.Alarm.Open && !r.Alarm.AckedAt.IsZero():
			alarm = "acknowledged by " + r.Alarm.AckedBy
		case r.Alarm.Open:
			alarm = "open since " + r.Alarm.Since.Format(time.RFC3339)
		case r.Problem:
			alarm = "not now (not expected on)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.DeviceID, r.Hostname, r.State, alarm, r.Why)
	}
	return tw.Flush()
}

func coverageAck(args []string, stdout io.Writer) error {
	fs, data := dataFlags("devices coverage ack")
	device := fs.String("device", "", "device ID")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *device == "" {
		return errors.New("--device is required")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/coverage/"+url.PathEscape(*device)+"/ack", nil)
	if err != nil {
		return err
	}
	body.Close()
	fmt.Fprintf(stdout, "coverage alarm of %s acknowledged: it will not be escalated\n", *device)
	return nil
}

type kvFlag map[string]any

func (k kvFlag) String() string { return "" }
func (k kvFlag) Set(s string) error {
	key, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q is not key=value", s)
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		k[key] = n
	} else {
		k[key] = v
	}
	return nil
}

func agentRequest(args []string, stdout io.Writer) error {
	fs, data := dataFlags("agent request")
	device := fs.String("device", "", "device ID")
	kind := fs.String("kind", "", "request kind (selftest)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the agent")
	params := kvFlag{}
	fs.Var(params, "param", "key=value parameter (repeatable)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "POST", "/v1/requests",
		admin.RequestBody{Device: *device, Kind: *kind, Params: params, Timeout: *timeout})
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(stdout, body)
	return err
}

func rotateKey(args []string, stdout io.Writer) error {
	fs, data := dataFlags("store rotate-key")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if err := daemon.RotateStoreKey(*data); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "store key rotated; keep a copy of the new keys/store.key away from this server")
	return nil
}

func devicesRevoke(args []string, stdout io.Writer) error {
	fs, data := dataFlags("devices revoke")
	device := fs.String("device", "", "device ID")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *device == "" {
		return errors.New("--device ID is required")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/devices/"+url.PathEscape(*device)+"/revoke",
		admin.RevokeRequest{Reason: *reason})
	if err != nil {
		return err
	}
	body.Close()
	fmt.Fprintf(stdout, "device %s revoked: its key is refused until `devices unrevoke`\n", *device)
	return nil
}

func devicesUnrevoke(args []string, stdout io.Writer) error {
	fs, data := dataFlags("devices unrevoke")
	device := fs.String("device", "", "device ID")
	reason := fs.String("reason", "", "why the revocation is lifted (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *device == "" || *reason == "" {
		return errors.New("--device ID and --reason TEXT are required")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/devices/"+url.PathEscape(*device)+"/unrevoke",
		admin.RevokeRequest{Reason: *reason})
	if err != nil {
		return err
	}
	body.Close()
	fmt.Fprintf(stdout, "revocation of device %s lifted; this is in the access log\n", *device)
	return nil
}

// osUser names the person running the CLI for the access log.
func osUser() string {
	if u, err := user.Current(); err == nil {
		return "os:" + u.Username
	}
	return "unknown"
}

func evidenceGet(args []string, stdout io.Writer) error {
	fs, data := dataFlags("evidence get")
	device := fs.String("device", "", "device ID")
	id := fs.String("id", "", "evidence ID (from the finding's evidence list)")
	reason := fs.String("reason", "", "why you are viewing it (recorded in the access log)")
	out := fs.String("out", "", "file to write the decrypted evidence to (owner-only)")
	as := fs.String("as", "", "reveal as this console account (a DSL): its role and routing apply, and the access log names it")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *device == "" || *id == "" || *reason == "" || *out == "" {
		return errors.New("--device, --id, --reason and --out are required")
	}
	q := url.Values{"reason": {*reason}}
	if *as != "" {
		q.Set("as", *as)
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "GET",
		"/v1/evidence/"+url.PathEscape(*device)+"/"+url.PathEscape(*id)+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d bytes to %s; this view is in the access log\n", n, *out)
	return nil
}

func accessLogCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("access-log")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/access-log", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	var entries []store.AccessEntry
	if err := json.NewDecoder(body).Decode(&entries); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, e := range entries {
		if *asJSON {
			enc.Encode(e)
			continue
		}
		fmt.Fprintf(stdout, "%s  %-20s %-14s device %s evidence %s  reason: %s\n", e.Time.Format(time.RFC3339), e.Who, e.Action, e.DeviceID, e.EvidenceID, e.Reason)
	}
	return nil
}

func userAdd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("user add")
	username := fs.String("username", "", "sign-in name")
	role := fs.String("role", "", "dsl, headteacher, technician, governor or admin")
	pwFile := fs.String("password-file", "", "file holding the password (- for stdin); at least 10 characters")
	display := fs.String("display-name", "", "name shown in the console and on review forms")
	email := fs.String("email", "", "address for alert notifications")
	chair := fs.Bool("chair", false, "this governor is the chair of governors (reviews alerts about the headteacher)")
	totp := fs.Bool("totp", false, "require an authenticator code at sign-in (prints the otpauth:// URI to enrol)")
	mustChange := fs.Bool("must-change-password", false, "the person chooses their own password at the first sign-in")
	school := fs.String("school", "", "school (ID or name) whose data the account sees (default: the default school; not for admin accounts)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *username == "" || *role == "" || *pwFile == "" {
		return errors.New("--username, --role and --password-file are required")
	}
	password, err := readPassword(*pwFile)
	if err != nil {
		return err
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/users", console.UserAddRequest{
		Username: *username, DisplayName: *display, Role: *role, Password: password, Email: *email, Chair: *chair, TOTP: *totp,
		MustChangePassword: *mustChange, School: *school})
	if err != nil {
		return err
	}
	defer body.Close()
	var resp console.UserAddResponse
	if err := json.NewDecoder(body).Decode(&resp); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(stdout, "user %s added (%s, school %s)\n", resp.Username, resp.Role, resp.School)
	if resp.TOTPURI != "" {
		fmt.Fprintf(stdout, "enrol this in an authenticator app: %s\n", resp.TOTPURI)
	}
	return nil
}

// readPassword reads a password from a file, or stdin for "-", without
// its line end.
func readPassword(file string) (string, error) {
	var pw []byte
	var err error
	if file == "-" {
		pw, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	} else {
		pw, err = os.ReadFile(file)
	}
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(string(pw), "\r\n"), nil
}

func userList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("user list")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/users", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	var users []console.UserJSON
	if err := json.NewDecoder(body).Decode(&users); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, u := range users {
			enc.Encode(u)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tNAME\tROLE\tSTATE\tLAST SIGN-IN\tTWO-STEP\tSCHOOL")
	for _, u := range users {
		role := u.Role
		if u.Chair {
			role += " (chair)"
		}
		state := "active"
		switch {
		case u.Disabled:
			state = "disabled"
			if u.DisabledBy != "" {
				state += " by " + u.DisabledBy
			}
		case u.MustChangePassword:
			state = "must change password"
		}
		last := "never"
		if u.LastSignIn != "" {
			last = u.LastSignIn
		}
		totp := "off"
		if u.TOTP {
			totp = "on"
		}
		school := u.School
		if school == "" {
			school = "(all: installation-wide)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Username, u.DisplayName, role, state, last, totp, school)
	}
	return tw.Flush()
}

func userSetDisabled(args []string, stdout io.Writer, disabled bool) error {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	fs, data := dataFlags("user " + verb)
	username := fs.String("username", "", "the account")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *username == "" {
		return errors.New("--username is required")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST",
		"/v1/users/"+url.PathEscape(*username)+"/"+verb, nil)
	if err != nil {
		return err
	}
	body.Close()
	if disabled {
		fmt.Fprintf(stdout, "user %s disabled; its sessions have ended\n", *username)
	} else {
		fmt.Fprintf(stdout, "user %s enabled\n", *username)
	}
	return nil
}

func userReset(args []string, stdout io.Writer) error {
	fs, data := dataFlags("user reset")
	username := fs.String("username", "", "the account")
	pwFile := fs.String("password-file", "", "file holding the new password (- for stdin); default: generate one and print it")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *username == "" {
		return errors.New("--username is required")
	}
	var req console.UserResetRequest
	if *pwFile != "" {
		pw, err := readPassword(*pwFile)
		if err != nil {
			return err
		}
		req.Password = pw
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST",
		"/v1/users/"+url.PathEscape(*username)+"/reset", req)
	if err != nil {
		return err
	}
	defer body.Close()
	var resp console.UserResetResponse
	if err := json.NewDecoder(body).Decode(&resp); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(stdout, "password of %s reset; their sessions have ended and they must choose a new password at the next sign-in\n", *username)
	if resp.TemporaryPassword != "" {
		fmt.Fprintf(stdout, "temporary password: %s\n", resp.TemporaryPassword)
	}
	return nil
}

func peopleImport(args []string, stdout io.Writer) error {
	fs, data := dataFlags("people import")
	skipBad := fs.Bool("skip-bad", false, "import the good rows even if some are bad")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Allow the file before or after the flags.
	rest := fs.Args()
	if len(rest) > 1 {
		file := rest[0]
		if err := fs.Parse(rest[1:]); err != nil {
			return err
		}
		rest = append([]string{file}, fs.Args()...)
	}
	if err := needData(*data); err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("name one CSV file")
	}
	b, err := os.ReadFile(rest[0])
	if err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "POST", "/v1/people/import",
		console.PeopleImportRequest{CSV: string(b), SkipBad: *skipBad})
	if err != nil {
		return err
	}
	defer body.Close()
	var resp console.PeopleImportResponse
	if err := json.NewDecoder(body).Decode(&resp); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	for _, e := range resp.Errors {
		fmt.Fprintf(stdout, "%s line %d skipped: %s\n", rest[0], e.Line, e.Error)
	}
	fmt.Fprintf(stdout, "%d people imported\n", resp.Imported)
	return nil
}
