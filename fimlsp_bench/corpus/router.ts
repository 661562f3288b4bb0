import { IncomingMessage, ServerResponse } from "http";

export type Method = "GET" | "POST" | "PUT" | "DELETE";

export interface Context {
  method: Method;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body?: unknown;
}

export type Handler = (ctx: Context) => Promise<Response> | Response;

export interface Response {
  status: number;
  headers?: Record<string, string>;
  body?: string | object;
}

interface Route {
  method: Method;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
}

export class HttpError extends Error {
  constructor(
    public readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

function compile(path: string): { pattern: RegExp; keys: string[] } {
  const keys: string[] = [];
  const source = path
    .split("/")
    .map((segment) => {
      if (segment.startsWith(":")) {
        keys.push(segment.slice(1));
        return "([^/]+)";
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return { pattern: new RegExp(`^${source}/?$`), keys };
}

export class Router {
  private routes: Route[] = [];
  private middleware: Array<(ctx: Context, next: () => Promise<Response>) => Promise<Response>> =
    [];

  add(method: Method, path: string, handler: Handler): this {
    const { pattern, keys } = compile(path);
    this.routes.push({ method, pattern, keys, handler });
    return this;
  }

  get(path: string, handler: Handler): this {
    return this.add("GET", path, handler);
  }

  post(path: string, handler: Handler): this {
    return this.add("POST", path, handler);
  }

  use(fn: (ctx: Context, next: () => Promise<Response>) => Promise<Response>): this {
    this.middleware.push(fn);
    return this;
  }

  match(method: Method, path: string): { route: Route; params: Record<string, string> } | null {
    for (const route of this.routes) {
      if (route.method !== method) {
        continue;
      }
      const found = route.pattern.exec(path);
      if (!found) {
        continue;
      }
      const params: Record<string, string> = {};
      route.keys.forEach((key, index) => {
        params[key] = decodeURIComponent(found[index + 1]);
      });
      return { route, params };
    }
    return null;
  }

  async handle(ctx: Omit<Context, "params">): Promise<Response> {
    const matched = this.match(ctx.method, ctx.path);
    if (!matched) {
      return { status: 404, body: { error: `no route for ${ctx.method} ${ctx.path}` } };
    }
    const full: Context = { ...ctx, params: matched.params };
    let index = -1;
    const dispatch = async (i: number): Promise<Response> => {
      if (i <= index) {
        throw new Error("next() called twice");
      }
      index = i;
      const fn = this.middleware[i];
      if (!fn) {
        return matched.route.handler(full);
      }
      return fn(full, () => dispatch(i + 1));
    };
    try {
      return await dispatch(0);
    } catch (error) {
      if (error instanceof HttpError) {
        return { status: error.status, body: { error: error.message } };
      }
      return { status: 500, body: { error: "internal error" } };
    }
  }
}

async function readBody(req: IncomingMessage, limit = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) {
      throw new HttpError(413, "body too large");
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function listener(router: Router) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    let body: unknown;
    if (req.method === "POST" || req.method === "PUT") {
      const text = await readBody(req);
      body = text ? JSON.parse(text) : undefined;
    }
    const response = await router.handle({
      method: (req.method ?? "GET") as Method,
      path: url.pathname,
      query: url.searchParams,
      body,
    });
    const payload =
      typeof response.body === "string" ? response.body : JSON.stringify(response.body ?? {});
    res.writeHead(response.status, {
      "content-type": typeof response.body === "string" ? "text/plain" : "application/json",
      ...response.headers,
    });
    res.end(payload);
  };
}

export function timing(): (ctx: Context, next: () => Promise<Response>) => Promise<Response> {
  return async (ctx, next) => {
    const started = performance.now();
    const response = await next();
    const elapsed = performance.now() - started;
    return {
      ...response,
      headers: { ...response.headers, "server-timing": `total;dur=${elapsed.toFixed(1)}` },
    };
  };
}

export function requireJson(ctx: Context): Record<string, unknown> {
  if (typeof ctx.body !== "object" || ctx.body === null) {
    throw new HttpError(400, "expected a JSON object");
  }
  return ctx.body as Record<string, unknown>;
}
