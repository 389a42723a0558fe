// Public API of the cache-manager engine ('nest-session/cache-manager'); needs the optional peer `cache-manager`.
export { CacheManagerBackend, type CacheManagerBackendOptions } from './cache-manager.backend.js';
