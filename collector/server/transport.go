package server

import (
	"fmt"

	"google.golang.org/grpc"
)

// Transport sizes the per-connection buffers of the agent port. An agent
// holds one connection all day and sends a heartbeat a minute and a batch
// now and then, so what matters at school and trust scale is memory per idle
// connection, not throughput per connection. gRPC's defaults give every
// connection a 32 KiB read buffer and a 32 KiB write buffer for its whole
// life: measured with tools/loadgen, that was about 44 % of the collector's
// live heap per agent (docs/scale.md, docs/benchmarks.md).
type Transport struct {
	// ReadBuffer is the bufio buffer in front of the TLS connection. 0 (the
	// default) reads frames straight from crypto/tls, which already holds
	// the decrypted record, so the extra copy buys nothing on TLS.
	ReadBuffer int
	// WriteBuffer batches frames before they reach TLS (default 32 KiB).
	WriteBuffer int
	// PrivateWriteBuffer keeps a write buffer per connection for its whole
	// life, as gRPC does by default. Off (the default): the buffer is taken
	// from a pool for a write and given back after the flush.
	PrivateWriteBuffer bool
}

// DefaultTransport is what the collector runs with.
func DefaultTransport() Transport { return Transport{ReadBuffer: 0, WriteBuffer: 32 << 10} }

// GRPCDefaultTransport is gRPC's own default, kept to measure against
// (`vigil-collector serve --grpc-buffers grpc-default`).
func GRPCDefaultTransport() Transport {
	return Transport{ReadBuffer: 32 << 10, WriteBuffer: 32 << 10, PrivateWriteBuffer: true}
}

// TransportByName maps the serve flag's values.
func TransportByName(name string) (Transport, error) {
	switch name {
	case "", "lean":
		return DefaultTransport(), nil
	case "grpc-default":
		return GRPCDefaultTransport(), nil
	}
	return Transport{}, fmt.Errorf("unknown buffer profile %q (lean or grpc-default)", name)
}

func (t Transport) options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(t.ReadBuffer),
		grpc.WriteBufferSize(t.WriteBuffer),
		grpc.SharedWriteBuffer(!t.PrivateWriteBuffer),
	}
}
