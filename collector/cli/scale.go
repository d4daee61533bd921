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
	"syscall"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/bus"
	"github.com/vigil-safeguarding/vigil/collector/daemon"
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
	listen := fs.String("listen", "127.0.0.1:4222", "loopback HOST:PORT for NATS clients (front-ends, storers)")
	cluster := fs.String("cluster", "vigil", "cluster name, the same on every node")
	clusterListen := fs.String("cluster-listen", "", "loopback HOST:PORT for routes from the other nodes (none: a single node)")
	routes := fs.String("routes", "", "comma-separated HOST:PORT route listeners of every node")
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
	if *clusterListen != "" {
		cfg.Cluster = &bus.Cluster{Name: *cluster, Listen: *clusterListen, Routes: splitList(*routes)}
	}
	node, err := bus.StartNode(cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	log.Info("nats node ready", "name", *name, "client_url", node.ClientURL(), "cluster", *clusterListen, "sync", "always")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return daemon.ServeFrontend(ctx, daemon.FrontendConfig{DataDir: *data, GRPCListen: *grpcAddr, NATS: splitList(*natsURLs),
		Replicas: *replicas, Heartbeat: *heartbeat, Transport: &transport, Name: *name, Logger: log})
}
