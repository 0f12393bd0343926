// Test service for Thrift peers (thriftpy2 and Apache thrift servers/clients).
// Servers are started with a label ("v1", "v2", ...) that whoami()/slow() return, so routing
// tests can see which backend answered. Methods are deliberately varied: a two-way call with a
// string, one with ints, a oneway, a declared exception, binary payloads and a latency knob.
namespace py echo_peer

exception EchoError {
  1: string why,
  2: i32 code,
}

service Echo {
  string echo(1: string s),
  i32 add(1: i32 a, 2: i32 b),
  oneway void fire(1: string s),
  void fail(1: string why) throws (1: EchoError e),
  binary blob(1: binary b),
  string whoami(),
  // number of oneway fire() calls this server has received
  i32 fired(),
  // sleeps min(ms, 10000) milliseconds then returns the label (for timeout tests)
  string slow(1: i32 ms),
  // raises an undeclared error: clients see TApplicationException(INTERNAL_ERROR)
  void crash(),
}
