// The benchmark's Thrift service: the wire bytes of benchmarks/wire.py follow this IDL, and the
// thriftpy2 client that validates the echo server and each proxy is generated from it.
namespace py bench_echo

service Echo {
  string echo(1: string s),
}
