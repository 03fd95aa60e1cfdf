// The node's JSON-RPC over HTTP (POST /) and its websocket (/ws) subscriptions: nothing else is reached.

export class RpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

let nextId = 1;

export async function call(method, params = {}) {
  const response = await fetch("/", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  const body = await response.json();
  if (body.error) throw new RpcError(body.error.code, body.error.message);
  return body.result;
}

// Calls `onBlock(notification)` for every committed block; reconnects after a drop; returns a stop function.
export function subscribeBlocks(onBlock, onState) {
  let socket = null;
  let stopped = false;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws`);
    socket.addEventListener("open", () => {
      onState("live");
      socket.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "subscribe", params: { topic: "new_blocks" } }));
    });
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.method === "subscription" && msg.params.topic === "new_blocks") onBlock(msg.params.result);
      if (msg.method === "subscription_dropped") socket.close();
    });
    socket.addEventListener("close", () => {
      onState("reconnecting");
      if (!stopped) setTimeout(open, 2000);
    });
  };
  open();
  return () => { stopped = true; if (socket) socket.close(); };
}
