package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/bus"
	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/server"
)

func logger(stderr io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// natsNode runs one JetStream cluster node (embedded nats-server, fsync on
// every write) as its own process, for front-ends and storers on this
// machine to share.
func natsNode(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats-node", flag.ContinueOnError)
	data := fs.String("data", "", "node data directory (JetStream file store in DIR/jetstream)")
	name := fs.String("name", "", "node name, unique in the cluster")
	listen := fs.String("listen", "127.0.0.1:4222", "HOST:PORT for NATS clients (front-ends, storers); loopback unless --tls")
	cluster := fs.String("cluster", "vigil", "cluster name, the same on every node")
	clusterListen := fs.String("cluster-listen", "", "HOST:PORT for routes from the other nodes (none: a single node); loopback unless --tls")
	routes := fs.String("routes", "", "comma-separated HOST:PORT route listeners of every node")
	tlsDir := fs.String("tls", "", "folder from `vigil-collector nats-cert` (ca.pem, cert.pem, key.pem): clients and routes are then mutual TLS with bus certificates and may be on other machines")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needData(*data); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required")
	}
	log, err := logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := bus.Config{Dir: *data, ServerName: *name, ClientListen: *listen, Logger: log}
	if cfg.TLS, err = loadBusTLS(*tlsDir); err != nil {
		return fmt.Errorf("--tls: %w", err)
	}
	if *clusterListen != "" {
		cfg.Cluster = &bus.Cluster{Name: *cluster, Listen: *clusterListen, Routes: splitList(*routes)}
	}
	node, err := bus.StartNode(cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	log.Info("nats node ready", "name", *name, "client_url", node.ClientURL(), "cluster", *clusterListen, "sync", "always", "tls", cfg.TLS != nil)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// frontendCmd runs a stateless stream front-end (daemon.ServeFrontend).
func frontendCmd(args []string, stderr io.Writer) error {
	fs, data := dataFlags("frontend")
	grpcAddr := fs.String("grpc-listen", "127.0.0.1:7443", "address for agents (gRPC, TLS)")
	natsURLs := fs.String("nats", "", "comma-separated nats://HOST:PORT of the JetStream cluster's nodes")
	natsTLS := fs.String("nats-tls", "", "folder from `vigil-collector nats-cert`: connect to the nodes with mutual TLS (required for nodes off this machine)")
	replicas := fs.Int("nats-replicas", 3, "replication of the findings stream and the devices bucket")
	name := fs.String("name", "vigil-frontend", "this front-end's name to NATS")
	heartbeat := fs.Duration("heartbeat", 60*time.Second, "heartbeat interval asked of agents")
	grpcBuffers := fs.String("grpc-buffers", "lean", "per-connection buffers on the agent port: lean or grpc-default")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	log, err := logger(stderr, *logLevel)
	if err != nil {
		return err
	}
	transport, err := server.TransportByName(*grpcBuffers)
	if err != nil {
		return fmt.Errorf("--grpc-buffers: %w", err)
	}
	busTLS, err := loadBusTLS(*natsTLS)
	if err != nil {
		return fmt.Errorf("--nats-tls: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return daemon.ServeFrontend(ctx, daemon.FrontendConfig{DataDir: *data, GRPCListen: *grpcAddr, NATS: splitList(*natsURLs),
		Replicas: *replicas, NATSTLS: busTLS, Heartbeat: *heartbeat, Transport: &transport, Name: *name, Logger: log})
}

// loadBusTLS reads a bus member's folder (none: nil, loopback only).
func loadBusTLS(dir string) (*bus.TLS, error) {
	if dir == "" {
		return nil, nil
	}
	return bus.LoadTLS(dir)
}

// natsCert issues a bus member's certificate (pki.IssueBusMember) from the
// bus CA in the store-owning collector's data dir, into a folder to copy
// to the node or front-end (its --tls / --nats-tls).
func natsCert(args []string, stdout io.Writer) error {
	fs, data := dataFlags("nats-cert")
	name := fs.String("name", "", "the member's name (a node's --name, a front-end's --name)")
	hosts := fs.String("hosts", "", "comma-separated names or IPs its peers reach it by (localhost and loopback are always included)")
	out := fs.String("out", "", "folder to write ca.pem, cert.pem and key.pem into (owner-only)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return errors.New("--name and --out are required")
	}
	if err := pki.IssueBusMember(filepath.Join(*data, "pki"), *name, splitList(*hosts), *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bus certificate for %s written to %s (ca.pem, cert.pem, key.pem); copy the folder to it and pass it as --tls (nats-node) or --nats-tls (frontend, serve)\n", *name, *out)
	return nil
}
