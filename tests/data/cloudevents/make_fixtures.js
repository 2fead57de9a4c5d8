// Writes tests/data/cloudevents/<case>/{input,expect}: events made by the
// official CloudEvents JavaScript SDK (cloudevents 8, structured mode) and the
// example events of the CloudEvents JSON format specification, each with the
// result txm_msg_decode must give (see README.md in that folder).
// Usage: npm install cloudevents@8 && node make_fixtures.js <dir>
const fs = require("fs");
const path = require("path");
const { CloudEvent, HTTP } = require("cloudevents");

const out = process.argv[2];
const T = "2026-11-27T20:16:31.228Z";

// The documented decoding of a structured event (README, "Message contract").
function expect(doc) {
  const ev = JSON.parse(doc);
  const known = ["specversion", "id", "source", "type", "time", "datacontenttype", "subject",
                 "partitionkey", "correlationid", "data", "data_base64"];
  const l = ["OK"];
  const ct = ev.datacontenttype ?? null;
  const isJson = ct === null || /^[^/;]+\/([^;]*\+)?json\s*(;|$)/i.test(ct);
  l.push("id " + ev.id, "source " + ev.source, "type " + ev.type);
  l.push("aggregate_id " + (ev.subject ?? ev.partitionkey ?? ""));
  l.push("correlation_id " + (ev.correlationid || ev.id));
  l.push("time " + (ev.time == null ? "absent" : microseconds(ev.time)));
  let kind, data = "";
  if (ev.data_base64 != null) { kind = "BINARY"; data = ev.data_base64; }
  else if (!("data" in ev)) kind = "NONE";
  else if (isJson) { kind = "JSON"; data = JSON.stringify(ev.data); }
  else { kind = "TEXT"; data = ev.data; }
  l.push("kind " + kind);
  l.push("content_type " + (ct ?? (kind === "JSON" ? "application/json" : "")));
  l.push("data " + data);
  for (const [k, v] of Object.entries(ev))
    if (!known.includes(k) && v !== null) l.push("ext." + k + " " + String(v));
  if (ev.subject != null && ev.partitionkey != null && ev.subject !== ev.partitionkey)
    l.push("ext.partitionkey " + ev.partitionkey);
  return l.join("\n") + "\n";
}

// RFC 3339 in UTC with six fraction digits, as txm_time_format writes it.
function microseconds(t) {
  const d = new Date(t);
  const frac = (t.match(/\.(\d+)/) || ["", ""])[1].padEnd(6, "0").slice(0, 6);
  return d.toISOString().replace(/\.\d+Z$/, "." + frac + "Z");
}

function write(name, doc) {
  const dir = path.join(out, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "input"), doc + "\n");
  fs.writeFileSync(path.join(dir, "expect"), expect(doc));
}

// The SDK's own structured serialisation; toEvent checks it validates.
function sdk(name, props) {
  const body = HTTP.structured(new CloudEvent(props)).body;
  HTTP.toEvent({ headers: { "content-type": "application/cloudevents+json" }, body });
  write(name, body);
}

const base = { type: "com.example.order.created", source: "/orders" };
sdk("js_plain", { ...base, data: { orderId: "order-42", total: 1999 } });
sdk("js_fixed_id_time", { ...base, id: "order-42-created", time: T, data: { orderId: "order-42" } });
sdk("js_subject", { ...base, id: "e1", time: T, subject: "order-42", data: { orderId: "order-42" } });
sdk("js_text_plain", { ...base, id: "e2", time: T, datacontenttype: "text/plain", data: "order 42 created" });
sdk("js_binary", { ...base, id: "e3", time: T, data: Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]) });
sdk("js_binary_png", { ...base, id: "e4", time: T, datacontenttype: "image/png",
                       data: Buffer.from("89504e470d0a1a0a", "hex") });
sdk("js_xml", { ...base, id: "e5", time: T, datacontenttype: "application/xml",
                data: '<order id="42" total="1999"/>' });
sdk("js_extensions", { ...base, id: "e6", time: T, subject: "order-42",
                       traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                       partitionkey: "customer-7", sequence: 7, sampled: true,
                       correlationid: "req-7f3a", data: { orderId: "order-42" } });
sdk("js_json_string", { ...base, id: "e7", time: T, data: "just a string" });
sdk("js_vendor_json", { ...base, id: "e8", time: T, datacontenttype: "application/vnd.orders+json",
                        dataschema: "https://example.com/schemas/order.json", data: [1, 2, 3] });
sdk("js_no_data", { ...base, id: "e9", time: T });
// The SDK always sets time; a producer that does not, made from its output.
{
  const ev = JSON.parse(HTTP.structured(new CloudEvent({ ...base, id: "e10", data: { a: 1 } })).body);
  delete ev.time;
  write("js_no_time", JSON.stringify(ev));
}

// The example events of the JSON format specification (cloudevents/spec,
// cloudevents/formats/json-format.md), verbatim. The first example's
// data_base64 is a placeholder, "... base64 encoded string ...", which is
// not base64, so it is expected MALFORMED; batch examples are skipped.
if (process.argv[3]) {
  const md = fs.readFileSync(process.argv[3], "utf8");
  const blocks = [...md.matchAll(/```JSON\n([\s\S]*?)```/g)].map((m) => m[1]);
  let n = 0;
  for (const b of blocks) {
    if (!b.trimStart().startsWith("{")) continue;
    const name = "spec_json_format_" + ++n;
    if (b.includes("... base64 encoded string ...")) {
      fs.mkdirSync(path.join(out, name), { recursive: true });
      fs.writeFileSync(path.join(out, name, "input"), b);
      fs.writeFileSync(path.join(out, name, "expect"),
                       "MALFORMED\ndata_base64 is the specification's placeholder, not base64.\n");
    } else {
      fs.mkdirSync(path.join(out, name), { recursive: true });
      fs.writeFileSync(path.join(out, name, "input"), b);
      fs.writeFileSync(path.join(out, name, "expect"), expect(b));
    }
  }
}
