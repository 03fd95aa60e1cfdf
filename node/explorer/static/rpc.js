// The node's JSON-RPC over HTTP (POST /) and its websocket (/ws) subscriptions: nothing else is reached.

// A node with rpc.auth_token wants `Authorization: Bearer <token>`: the page asks for the token once and keeps it
// in sessionStorage, which this tab alone sees and which is gone when the tab closes. Not localStorage: that
// stays on disk with no end, for every later page and script of this origin. Never in the URL: URLs are logged
// and kept in the history.

export class RpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

// The node refused the request for want of its token (HTTP 401).
export class AuthError extends RpcError {}

const TOKEN_KEY = "inferchain.rpcToken";

export function rpcToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setRpcToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

let nextId = 1;

export async function call(method, params = {}) {
  const token = rpcToken();
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch("/", {
    method: "POST",
    headers,
    body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
  });
  if (response.status === 401) {
    throw new AuthError(-32007, token ? "the node refused this token: it is not its rpc.auth_token"
                                      : "this node requires its RPC token (rpc.auth_token)");
  }
  const body = await response.json();
  if (body.error) throw new RpcError(body.error.code, body.error.message);
  return body.result;
}

// A browser cannot set headers on a websocket: the token travels as the subprotocol `bearer.<base64url>`,
// beside `inferchain`, which the node selects (node/rpc/guard.py).
function socketProtocols() {
  const token = rpcToken();
  if (!token) return undefined;
  const bytes = new TextEncoder().encode(token);
  const b64 = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["inferchain", `bearer.${b64}`];
}

// Calls `onBlock(notification)` for every committed block; reconnects after a drop; returns a stop function.
export function subscribeBlocks(onBlock, onState) {
  let socket = null;
  let stopped = false;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws`, socketProtocols());
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
