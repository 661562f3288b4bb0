'use strict';

const fs = require('fs');
const path = require('path');
const { EventEmitter } = require('events');

const DEFAULT_OPTIONS = {
  directory: '.cache',
  maxEntries: 500,
  ttlMs: 60 * 60 * 1000,
};

function now() {
  return Date.now();
}

function isExpired(entry, ttlMs) {
  if (!entry) {
    return true;
  }
  return now() - entry.storedAt > ttlMs;
}

class Store extends EventEmitter {
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this.entries = new Map();
    this.hits = 0;
    this.misses = 0;
  }

  get size() {
    return this.entries.size;
  }

  get(key) {
    const entry = this.entries.get(key);
    if (isExpired(entry, this.options.ttlMs)) {
      this.misses += 1;
      this.entries.delete(key);
      return undefined;
    }
    this.hits += 1;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key, value) {
    this.entries.delete(key);
    this.entries.set(key, { value, storedAt: now() });
    while (this.entries.size > this.options.maxEntries) {
      const oldest = this.entries.keys().next().value;
      this.entries.delete(oldest);
      this.emit('evict', oldest);
    }
    return this;
  }

  delete(key) {
    const existed = this.entries.delete(key);
    if (existed) {
      this.emit('delete', key);
    }
    return existed;
  }

  stats() {
    const total = this.hits + this.misses;
    return {
      hits: this.hits,
      misses: this.misses,
      ratio: total === 0 ? 0 : this.hits / total,
    };
  }

  async save(file) {
    const target = path.join(this.options.directory, file);
    const rows = [];
    for (const [key, entry] of this.entries) {
      if (!isExpired(entry, this.options.ttlMs)) {
        rows.push({ key, value: entry.value, storedAt: entry.storedAt });
      }
    }
    await fs.promises.mkdir(this.options.directory, { recursive: true });
    await fs.promises.writeFile(target, JSON.stringify(rows, null, 2), 'utf8');
    this.emit('save', target, rows.length);
    return rows.length;
  }

  async load(file) {
    const source = path.join(this.options.directory, file);
    let text;
    try {
      text = await fs.promises.readFile(source, 'utf8');
    } catch (error) {
      if (error.code === 'ENOENT') {
        return 0;
      }
      throw error;
    }
    const rows = JSON.parse(text);
    let loaded = 0;
    for (const row of rows) {
      if (typeof row.key !== 'string') {
        continue;
      }
      this.entries.set(row.key, { value: row.value, storedAt: row.storedAt });
      loaded += 1;
    }
    return loaded;
  }
}

function groupBy(items, keyOf) {
  const groups = new Map();
  for (const item of items) {
    const key = keyOf(item);
    if (!groups.has(key)) {
      groups.set(key, []);
    }
    groups.get(key).push(item);
  }
  return groups;
}

function debounce(fn, waitMs) {
  let timer = null;
  return function debounced(...args) {
    if (timer !== null) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = null;
      fn.apply(this, args);
    }, waitMs);
  };
}

const parseQuery = (query) => {
  const result = {};
  for (const part of query.replace(/^\?/, '').split('&')) {
    if (!part) {
      continue;
    }
    const [rawKey, rawValue = ''] = part.split('=');
    const key = decodeURIComponent(rawKey);
    const value = decodeURIComponent(rawValue.replace(/\+/g, ' '));
    if (key in result) {
      result[key] = [].concat(result[key], value);
    } else {
      result[key] = value;
    }
  }
  return result;
};

async function retry(task, attempts = 3, delayMs = 100) {
  let lastError;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    try {
      return await task(attempt);
    } catch (error) {
      lastError = error;
      if (attempt < attempts) {
        await new Promise((resolve) => setTimeout(resolve, delayMs * attempt));
      }
    }
  }
  throw lastError;
}

function formatBytes(bytes) {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function summarize(store) {
  const { hits, misses, ratio } = store.stats();
  const lines = [
    `entries: ${store.size}`,
    `hits: ${hits}`,
    `misses: ${misses}`,
    `hit ratio: ${(ratio * 100).toFixed(1)}%`,
  ];
  return lines.join('\n');
}

module.exports = {
  Store,
  groupBy,
  debounce,
  parseQuery,
  retry,
  formatBytes,
  summarize,
};
