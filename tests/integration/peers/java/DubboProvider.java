// Dubbo2 provider for integration tests: dubbo:// frames with Hessian2 bodies, written against
// Debian's Caucho Hessian (libhessian-java), so it is a Hessian2 peer independent of our codec.
//
//   java --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED \
//        -cp <classes>:/usr/share/java/hessian.jar DubboProvider <port> <label>
//
// Any interface/path is served with these methods:
//   sayHello(String) -> "Hello <name>, response from <label>"   echo(Object) -> the argument
//   whoami() -> label        getAttachment(String key) -> that request attachment, as received
//   fail(String) -> exception response (RuntimeException)       countOneway() -> oneways seen
//   slow(int ms) -> label after ms (<= 10000) milliseconds      anything else -> SERVICE_ERROR
// Requests carrying attachment "want-attachments" get a *_WITH_ATTACHMENTS response.
// Oneway requests (two-way bit clear) get no reply. Heartbeats (event bit) are answered.
// One reader thread per connection; requests run on a pool and replies are written under a
// per-connection lock, so pipelined requests may be answered out of order.
import com.caucho.hessian.io.Hessian2Input;
import com.caucho.hessian.io.Hessian2Output;
import com.caucho.hessian.io.SerializerFactory;
import java.io.*;
import java.net.*;
import java.nio.ByteBuffer;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;

public class DubboProvider {
    static final short MAGIC = (short) 0xdabb;
    static final int FLAG_REQ = 0x80, FLAG_TWOWAY = 0x40, FLAG_EVENT = 0x20, SER_MASK = 0x1f;
    static final int HESSIAN2 = 2;
    static final byte OK = 20, BAD_REQUEST = 40, SERVICE_ERROR = 70;
    static final int WITH_EXCEPTION = 0, VALUE = 1, NULL_VALUE = 2;  // +3: with attachments
    static final int MAX_BODY = 8 << 20;
    static final SerializerFactory FACTORY = new SerializerFactory();
    static final AtomicInteger ONEWAY = new AtomicInteger();
    static final ExecutorService POOL = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r);
        t.setDaemon(true);
        return t;
    });
    static String label;

    public static void main(String[] a) throws Exception {
        int port = Integer.parseInt(a[0]);
        label = a.length > 1 ? a[1] : "v1";
        ServerSocket ss = new ServerSocket(port, 1024, InetAddress.getByName("127.0.0.1"));
        System.out.println("dubbo provider " + label + " on 127.0.0.1:" + port);
        System.out.flush();
        while (true) {
            Socket s = ss.accept();
            s.setTcpNoDelay(true);
            Thread t = new Thread(() -> serve(s));
            t.setDaemon(true);
            t.start();
        }
    }

    static int countArgs(String desc) {
        int n = 0;
        for (int i = 0; i < desc.length(); i++) {
            char c = desc.charAt(i);
            if (c == '[') continue;
            if (c == 'L') i = desc.indexOf(';', i);
            n++;
        }
        return n;
    }

    static void serve(Socket s) {
        try (s) {
            DataInputStream in = new DataInputStream(new BufferedInputStream(s.getInputStream()));
            OutputStream out = new BufferedOutputStream(s.getOutputStream());
            Object writeLock = new Object();
            byte[] hdr = new byte[16];
            while (true) {
                in.readFully(hdr);
                ByteBuffer h = ByteBuffer.wrap(hdr);
                if (h.getShort() != MAGIC) throw new IOException("bad magic");
                int flag = h.get() & 0xff;
                h.get();
                long id = h.getLong();
                int len = h.getInt();
                if (len < 0 || len > MAX_BODY) throw new IOException("bad body length " + len);
                byte[] body = new byte[len];
                in.readFully(body);
                if ((flag & FLAG_REQ) == 0) continue;  // a response to us: ignore
                if ((flag & FLAG_EVENT) != 0) {  // heartbeat: answer with a null event response
                    reply(out, writeLock, FLAG_EVENT | HESSIAN2, OK, id, ho -> ho.writeNull());
                    continue;
                }
                boolean twoWay = (flag & FLAG_TWOWAY) != 0;
                if ((flag & SER_MASK) != HESSIAN2) {
                    if (twoWay) reply(out, writeLock, HESSIAN2, BAD_REQUEST, id,
                            ho -> ho.writeString("unsupported serialization " + (flag & SER_MASK)));
                    continue;
                }
                if (!twoWay) {
                    ONEWAY.incrementAndGet();
                    continue;
                }
                POOL.execute(() -> handle(out, writeLock, id, body));
            }
        } catch (EOFException | SocketException e) {
            // peer closed
        } catch (Exception e) {
            e.printStackTrace();
        }
    }

    interface BodyWriter { void write(Hessian2Output ho) throws IOException; }

    static void reply(OutputStream out, Object lock, int flag, byte status, long id, BodyWriter w)
            throws IOException {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        Hessian2Output ho = new Hessian2Output(bo);
        ho.setSerializerFactory(FACTORY);
        w.write(ho);
        ho.flush();
        byte[] rb = bo.toByteArray();
        ByteBuffer r = ByteBuffer.allocate(16 + rb.length);
        r.putShort(MAGIC).put((byte) flag).put(status).putLong(id).putInt(rb.length).put(rb);
        synchronized (lock) {
            out.write(r.array());
            out.flush();
        }
    }

    static void handle(OutputStream out, Object lock, long id, byte[] body) {
        try {
            Hessian2Input hi = new Hessian2Input(new ByteArrayInputStream(body));
            hi.setSerializerFactory(FACTORY);
            hi.readString();  // dubbo version
            String path = hi.readString();
            hi.readString();  // service version
            String method = hi.readString();
            String desc = hi.readString();
            Object[] args = new Object[countArgs(desc)];
            for (int i = 0; i < args.length; i++) args[i] = hi.readObject();
            Map<?, ?> att = (Map<?, ?>) hi.readObject();
            if (att == null) att = Collections.emptyMap();
            Object result;
            Throwable error = null;
            switch (method) {
                case "sayHello": result = "Hello " + args[0] + ", response from " + label; break;
                case "echo": result = args.length > 0 ? args[0] : null; break;
                case "whoami": result = label; break;
                case "getAttachment": result = att.get(args[0]); break;
                case "countOneway": result = ONEWAY.get(); break;
                case "slow":
                    Thread.sleep(Math.max(0, Math.min(((Number) args[0]).intValue(), 10000)));
                    result = label;
                    break;
                case "fail":
                    RuntimeException ex = new RuntimeException(String.valueOf(args[0]));
                    ex.setStackTrace(new StackTraceElement[0]);
                    error = ex;
                    result = null;
                    break;
                default:
                    reply(out, lock, HESSIAN2, SERVICE_ERROR, id, ho -> ho.writeString(
                            "no method " + method + "(" + desc + ") in " + path + " on " + label));
                    return;
            }
            boolean withAtt = att.containsKey("want-attachments");
            int type = error != null ? WITH_EXCEPTION : result == null ? NULL_VALUE : VALUE;
            final Object value = error != null ? error : result;
            final int rtype = withAtt ? type + 3 : type;
            reply(out, lock, HESSIAN2, OK, id, ho -> {
                ho.writeInt(rtype);
                if (rtype % 3 != NULL_VALUE) ho.writeObject(value);
                if (withAtt) {
                    Map<String, String> ra = new HashMap<>();
                    ra.put("provider", label);
                    ra.put("dubbo", "2.0.2");
                    ho.writeObject(ra);
                }
            });
        } catch (Exception e) {
            try {
                reply(out, lock, HESSIAN2, BAD_REQUEST, id, ho -> ho.writeString("bad request: " + e));
            } catch (IOException ignored) {
                // connection gone
            }
        }
    }
}
