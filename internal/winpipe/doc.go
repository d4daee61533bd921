// Package winpipe is a Windows named-pipe listener and dialer whose
// connections are *os.File values on the Go runtime's I/O completion port
// (Go >= 1.25 accepts overlapped handles in os.NewFile), so reads, writes
// and deadlines behave like a socket's.
//
// It exists instead of go-winio's ListenPipe because that one creates its
// first pipe instance with SYNCHRONIZE access only, relying on the Windows
// named-pipe filesystem to keep such an instance out of clients' reach. Wine
// (8.0) does not: a client's CreateFile connects to that never-served
// instance, its writes go nowhere and the server's Accept waits forever.
// Here every instance is a real one: the first (FILE_FLAG_FIRST_PIPE_INSTANCE,
// so a squatter's earlier pipe of the same name makes Listen fail) serves the
// first client, and before a connected instance is handed out the next one is
// created, so the name is never free for someone else to take.
package winpipe
