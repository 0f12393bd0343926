// Independent Hessian2 oracle for the Dubbo codec tests: Caucho Hessian (Debian libhessian-java)
// writes values with Hessian2Output; the Python test checks that the scanner skips exactly those
// bytes and that Dubbo bodies written in one stream decode.
// Output, one case per line: name TAB hex(bytes) TAB ("t" + hex(UTF-8 of the string) or "-").
// Build: javac -cp /usr/share/java/hessian.jar HessianOracle.java
// Run (JDK 17): java --add-opens java.base/java.lang=ALL-UNNAMED
//   --add-opens java.base/java.util=ALL-UNNAMED -cp /usr/share/java/hessian.jar:. HessianOracle
import com.caucho.hessian.io.Hessian2Output;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.Serializable;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.util.*;

public class HessianOracle {
    public static class Car implements Serializable {
        public String color;
        public int year;
        public Car next;
        public double[] scores;

        Car(String color, int year) {
            this.color = color;
            this.year = year;
            this.scores = new double[] {1.0, 2.5};
        }
    }

    public enum Colour { RED, GREEN }

    interface Writer {
        void write(Hessian2Output out) throws IOException;
    }

    static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder();
        for (byte b : bytes) sb.append(String.format("%02x", b & 0xff));
        return sb.toString();
    }

    static void emit(String name, String text, Writer writer) throws IOException {
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        Hessian2Output out = new Hessian2Output(bos);
        writer.write(out);
        out.flush();
        String expected = text == null ? "-" : "t" + hex(text.getBytes(StandardCharsets.UTF_8));
        System.out.println(name + "\t" + hex(bos.toByteArray()) + "\t" + expected);  // never empty
    }

    static void value(String name, Object v) throws IOException {
        emit("value:" + name, v instanceof String ? (String) v : null, out -> out.writeObject(v));
    }

    static String repeat(String s, int n) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) sb.append(s);
        return sb.toString();
    }

    public static void main(String[] args) throws IOException {
        value("null", null);
        value("true", true);
        value("false", false);
        for (int v : new int[] {0, -16, 47, 48, -17, 2047, -2048, 262143, -262144, 262144,
                Integer.MAX_VALUE, Integer.MIN_VALUE}) {
            value("int " + v, v);
        }
        for (long v : new long[] {0L, -8L, 15L, 2047L, 262143L, 262144L, Integer.MAX_VALUE,
                1L << 40, Long.MIN_VALUE}) {
            value("long " + v, v);
        }
        for (double v : new double[] {0.0, 1.0, -128.0, 127.0, 32767.0, 3.25, 12.25, 1.5e300,
                Double.NaN}) {
            value("double " + v, v);
        }
        value("date ms", new Date(894621091000L));
        value("date minutes", new Date(894621060000L));
        value("binary 3", new byte[] {1, 2, 3});
        value("binary 1000", new byte[1000]);
        value("binary 70000", new byte[70000]);
        String[] strings = {"", "hello", repeat("x", 31), repeat("x", 32), repeat("é", 1023),
                repeat("é", 1024), "中文字符串", "emoji 😀 pair", repeat("中", 40000),
                repeat("a😀", 20000)};
        for (int i = 0; i < strings.length; i++) value("string #" + i, strings[i]);
        value("int[]", new int[] {1, 2, 3});
        value("String[]", new String[] {"a", "b"});
        value("Object[]", new Object[] {1, "two", null});
        value("ArrayList", new ArrayList<>(Arrays.asList(1, "x", 2.5)));
        value("ArrayList 20", new ArrayList<>(Collections.nCopies(20, "s")));
        value("LinkedList", new LinkedList<>(Arrays.asList("a", "b")));
        HashMap<String, Object> map = new HashMap<>();
        map.put("a", 1);
        map.put("b", Arrays.asList("x", "y"));
        value("HashMap", map);
        value("TreeMap", new TreeMap<>(Map.of("k", "v", "n", 5)));
        Car car = new Car("red", 1999);
        car.next = new Car("blue", 2001);
        car.next.next = car;  // a cycle: written as a ref 'Q'
        value("Car cycle", car);
        value("two Cars same class", Arrays.asList(new Car("a", 1), new Car("b", 2), car));
        value("enum", Colour.GREEN);
        value("BigDecimal", new BigDecimal("12345.678"));
        value("exception", new IllegalStateException("boom", new RuntimeException("cause")));

        // Dubbo bodies written in one stream, class definitions shared across values (§27.2).
        Map<String, String> att = new HashMap<>();
        att.put("path", "com.example.CarService");
        att.put("group", "g1");
        att.put("x-user", "jason");
        emit("request", null, out -> {
            out.writeString("2.0.2");
            out.writeString("com.example.CarService");
            out.writeString("1.0.0");
            out.writeString("park");
            out.writeString("Lcom/example/Car;Ljava/util/List;I[Ljava/lang/String;");
            out.writeObject(car);
            out.writeObject(Arrays.asList(new Car("c", 3), car.next));
            out.writeInt(5);
            out.writeObject(new String[] {"é", "😀"});
            out.writeObject(att);
        });
        emit("response value", null, out -> {
            out.writeInt(4);
            out.writeObject(Arrays.asList(car, new Car("d", 4)));
            out.writeObject(att);
        });
        emit("response exception", null, out -> {
            out.writeInt(3);
            out.writeObject(new IllegalArgumentException("bad car"));
            out.writeObject(att);
        });
        emit("response null", null, out -> {
            out.writeInt(5);
            out.writeObject(att);
        });
    }
}
