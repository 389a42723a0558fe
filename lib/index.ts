// Public API of nest-session's core. Everything a user needs is exported here by name; nothing
// requires a deep import. The optional engines have their own entries, so that the core's
// declarations name no optional peer: 'nest-session/redis', 'nest-session/cache-manager' and
// 'nest-session/postgres'.

// Module
export { SessionModule } from './nest/session.module.js';
export { SessionMiddleware } from './nest/session.middleware.js';
export { SESSION_OPTIONS } from './session/session.constants.js';
export type {
  SessionModuleOptions,
  SessionCookieOptions,
  SessionLockOptions,
  ResolvedSessionOptions,
  SessionGarbageCollectionOptions,
  SessionIpLockOptions,
  SessionLimitPolicy,
} from './session/session-module.options.js';

// Session
export { SessionInterface } from './session/session.interface.js';
export type { SessionData, SessionLockState } from './session/session-data.interface.js';
export type { SessionMetadata } from './session/session-metadata.interface.js';
export { CurrentSession } from './nest/current-session.decorator.js';
export { SessionIdGenerator } from './session/session-id-generator.interface.js';
export { RandomIdGenerator } from './session/random-id.generator.js';
export { userTag } from './session/user-tag.js';

// SessionManager and garbage collection
export { SessionManager, type SessionInfo, type UserSessionInfo } from './manager/session.manager.js';
export { GC_CRON_JOB_NAME } from './manager/gc.scheduler.js';
export type {
  SessionEvent,
  SessionStartedEvent,
  SessionRenewedEvent,
  SessionDestroyedEvent,
  SessionExpiredEvent,
  SessionUserBoundEvent,
  SessionGcEvent,
} from './session/session-events.js';

// Caches
export type {
  TaggableBackend,
  BackendEntry,
  BackendWrite,
  WriteBatch,
  WriteGuard,
  WriteResult,
} from './cache/taggable-backend.interface.js';
export { WriteTicket, type WriteOrder } from './cache/write-ticket.js';
export { SessionSerializer } from './cache/session-serializer.interface.js';
export { DevalueSerializer } from './cache/devalue.serializer.js';
export { MemoryBackend, type MemoryBackendOptions, type MemoryBackendStats } from './cache/memory.backend.js';
export { IDENTIFIER_PATTERN } from './cache/identifier.js';

// Locking
export { SessionLocker, type SessionLock as SessionLockHandle, type LockOptions } from './locking/session-locker.interface.js';
export { MemoryLocker } from './locking/memory.locker.js';
export { SessionLock } from './nest/session-lock.decorator.js';
export { SessionLockInterceptor, SESSION_LOCK_METADATA } from './nest/session-lock.interceptor.js';

// Bags
export type { SessionBagInterface, SessionBagFactory } from './bags/session-bag.interface.js';
export { AbstractBag } from './bags/abstract.bag.js';
export { AttributeBag } from './bags/attribute.bag.js';
export { FlashBag, type FlashMessages } from './bags/flash.bag.js';
export { AutoExpireFlashBag } from './bags/auto-expire-flash.bag.js';
export { MetadataBag } from './bags/metadata.bag.js';
export { SessionAttributes } from './bags/session-attributes.js';
export { SessionBagRegistry } from './bags/session-bag.registry.js';
export { Flashes } from './nest/flashes.decorator.js';

// Re-authentication age
export { RequireFreshSession } from './nest/require-fresh-session.decorator.js';
export { FreshSessionGuard, FRESH_SESSION_METADATA } from './nest/fresh-session.guard.js';

// Measurements (option `instrumentation`; OpenTelemetry metrics in 'nest-session/opentelemetry')
export type { SessionInstrumentation, SessionStorePart } from './session/session-instrumentation.js';

// Taking over express-session users (option `legacy`)
export type { LegacySessionOptions } from './legacy/legacy-session.options.js';
export type { LegacySessionLoader, LegacySessionData } from './legacy/legacy-session.loader.js';
export {
  ConnectRedisLoader,
  type ConnectRedisLoaderOptions,
  type ConnectRedisClient,
  type ConnectRedisSerializer,
} from './legacy/connect-redis.loader.js';

// WebSocket gateways (socket.io, ws)
export { SessionWebSocketAdapter, type SessionWebSocketAdapterOptions } from './nest/session-web-socket.adapter.js';
export { SessionSocketRegistry } from './nest/session-socket.registry.js';
export { SESSION_ENDED_CLOSE_CODE, SESSION_ENDED_CLOSE_REASON } from './nest/session-socket.transport.js';

// GraphQL (Apollo, Mercurius; subscriptions over graphql-ws)
export {
  GraphQLSessions,
  type GraphQLSchemaLike,
  type GraphQLWsContextLike,
  type GraphQLSocketContext,
} from './nest/graphql-sessions.js';

// passport (@nestjs/passport with session: true)
export { PassportSessionModule } from './nest/passport-session.module.js';
export {
  PassportSessions,
  type PassportSessionOptions,
  type PassportLike,
  type PassportMiddleware,
} from './nest/passport-sessions.js';
export {
  PassportSession,
  defaultPassportUserId,
  type PassportSessionEntry,
  type PassportSessionCallback,
} from './nest/passport-session.js';

// Errors
export { SessionError } from './errors/session.error.js';
export { SessionNotStartedException } from './errors/session-not-started.exception.js';
export { DataNotSerializableException } from './errors/data-not-serializable.exception.js';
export { InvalidArgumentException } from './errors/invalid-argument.exception.js';
export { SessionLimitExceededException } from './errors/session-limit-exceeded.exception.js';
export { InvalidOptionException } from './errors/invalid-option.exception.js';
export { OperationNotSupportedException } from './errors/operation-not-supported.exception.js';
export { SessionOutsideRequestException } from './errors/session-outside-request.exception.js';
export { SessionDestroyedException } from './errors/session-destroyed.exception.js';
export { LockException } from './errors/lock.exception.js';
export { LockTimeoutException } from './errors/lock-timeout.exception.js';
export { StoreUnavailableException } from './errors/store-unavailable.exception.js';
export { SessionLimitReachedException } from './errors/session-limit-reached.exception.js';
export { SessionNotFoundException } from './errors/session-not-found.exception.js';
export { SessionNotAuthenticatedException } from './errors/session-not-authenticated.exception.js';
export { ReauthenticationRequiredException } from './errors/reauthentication-required.exception.js';
