// The provider's JavaScript SDK (npm novita-sdk), unmodified, against a wanlab server.
// Usage: node sdk_check.js BASE_URL KEY BODY_JSON  -> prints one JSON line: {task_id, polls, final, error}
// The SDK sends the bare key in Authorization (no "Bearer "); its wanT2v body may carry `frames`.
const { NovitaSDK } = require("novita-sdk");

async function main() {
  const [base, key, bodyText] = process.argv.slice(2);
  const sdk = new NovitaSDK(key);
  sdk.setBaseUrl(base);
  const out = { polls: [] };
  try {
    const submitted = await sdk.wanT2v(JSON.parse(bodyText));
    out.task_id = submitted.task_id;
    const deadline = Date.now() + 120000;
    for (;;) {
      const res = await sdk.progress({ task_id: out.task_id });
      out.polls.push(res.task.status);
      if (res.task.status === "TASK_STATUS_SUCCEED" || res.task.status === "TASK_STATUS_FAILED") {
        out.final = res;
        break;
      }
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    out.error = { code: err.code, reason: err.reason, msg: err.msg, metadata: err.metadata };
  }
  console.log(JSON.stringify(out));
}

main();
