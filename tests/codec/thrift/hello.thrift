struct Person {
  1: string name,
  2: i32 age,
  3: list<i64> scores,
  4: map<string, double> weights,
  5: set<i16> tags,
  6: bool active,
  7: optional Person buddy,
  8: binary blob,
  9: byte level,
  10: list<list<string>> groups,
}

exception NotFound {
  1: string message,
}

service Hello {
  string sayHello(1: Person person, 2: list<Person> others, 3: map<i32, list<string>> extra)
    throws (1: NotFound nf),
  oneway void ping(1: i64 at),
}
