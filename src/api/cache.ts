/**
 * Downloaded checkpoint files are kept in the browser's Cache Storage, so a reload does not download
 * them again. The key is the file's URL, which holds the model id, the revision and the file name for
 * Hub models (https://huggingface.co/<id>/resolve/<revision>/<file>) and the folder URL + file name
 * otherwise. Only complete 200 responses are stored (Cache.put commits once the whole body has been
 * read). Where Cache Storage is missing (Node, insecure origins) the plain fetch is used.
 */

export const MODEL_CACHE = 'llm-surgeon-models-v1';

const hasCaches = (): boolean => typeof globalThis.caches !== 'undefined' && typeof globalThis.caches.open === 'function';

/** fetch() that answers GETs from Cache Storage and stores fresh 200 responses there. */
export function cachedFetch(base: typeof fetch = globalThis.fetch): typeof fetch {
  if (!hasCaches()) return base;
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if ((init?.method ?? 'GET') !== 'GET' || !/^https?:/i.test(url)) return base(input, init);
    let cache: Cache | undefined;
    try {
      cache = await caches.open(MODEL_CACHE);
      const hit = await cache.match(url);
      if (hit) return hit;
    } catch {
      cache = undefined; // storage disabled or over quota: fall through to the network
    }
    const res = await base(input, init);
    if (cache && res.status === 200) void cache.put(url, res.clone()).catch(() => undefined);
    return res;
  };
}

/** URLs of the cached checkpoint files. */
export async function cachedFiles(): Promise<string[]> {
  if (!hasCaches()) return [];
  const c = await caches.open(MODEL_CACHE);
  return (await c.keys()).map((r) => r.url);
}

/** Drop every cached checkpoint file; resolves true when there was a cache to delete. */
export async function clearCache(): Promise<boolean> {
  if (!hasCaches()) return false;
  return caches.delete(MODEL_CACHE);
}
