// Validates the Prometheus Operator resources (ServiceMonitor,
// PrometheusRule) among JSON documents on stdin against the CRD schemas
// shipped in @kubernetes-models/prometheus-operator. Used by deploy/check.
import fs from "node:fs";
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { ServiceMonitor, PrometheusRule };
let seen = 0;
let failed = 0;
for (const doc of JSON.parse(fs.readFileSync(0, "utf8"))) {
  if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1" || !kinds[doc.kind]) continue;
  seen++;
  try {
    new kinds[doc.kind](doc).validate();
    console.log(`crd schema: ${doc.kind}/${doc.metadata.name} valid`);
  } catch (e) {
    failed++;
    console.error(`crd schema: ${doc.kind}/${doc.metadata.name}: ${e.message}`);
  }
}
if (seen === 0) {
  console.error("crd schema: no Prometheus Operator resource found");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
