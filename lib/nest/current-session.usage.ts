import type { InjectionToken } from '@nestjs/common';
import type { ModulesContainer } from '@nestjs/core';

/** One place in the app that injects a token whose use needs the request's async context. */
export interface CurrentSessionConsumer {
  /** The consumer's name: its class, or the token of a factory provider. */
  readonly consumer: string;
  /** The injected token's name (`SessionInterface`, `SessionManager`). */
  readonly token: string;
}

/** Nest's reflection keys of declared dependencies (stable since Nest 6). */
const DESIGN_PARAMTYPES = 'design:paramtypes';
const SELF_DECLARED_DEPS = 'self:paramtypes';
const PROPERTY_DEPS = 'self:properties_metadata';

/**
 * The first provider, controller, enhancer (guard, interceptor, pipe, filter), middleware or
 * gateway of the app that declares a dependency on one of `tokens` (constructor parameter,
 * `@Inject()` parameter or property, factory `inject`), whatever its scope; providers hosted by
 * one of `ownModules` (this library's modules) do not count. Read from the declarations, not the
 * resolved graph, so request-scoped and not yet instantiated classes count too. Undefined when
 * there is none. Dynamic look-ups (`moduleRef.get`) leave no trace and are not seen.
 */
export function findCurrentSessionConsumer(
  modules: ModulesContainer,
  tokens: readonly InjectionToken[],
  ownModules: readonly unknown[],
): CurrentSessionConsumer | undefined {
  for (const module of modules.values()) {
    if (ownModules.includes(module.metatype)) continue;
    for (const wrappers of [module.providers, module.controllers, module.injectables, module.middlewares]) {
      for (const wrapper of wrappers.values()) {
        for (const dependency of declaredDependencies(wrapper.metatype, wrapper.inject)) {
          if (!tokens.includes(dependency as InjectionToken)) continue;
          return { consumer: nameOf(wrapper.metatype ?? wrapper.token, wrapper.token), token: nameOf(dependency) };
        }
      }
    }
  }
  return undefined;
}

/** What a class or factory provider declares it needs (forward references resolved). */
function declaredDependencies(metatype: unknown, inject: readonly unknown[] | null | undefined): unknown[] {
  const found: unknown[] = [];
  if (Array.isArray(inject)) {
    // Factory providers: tokens, or `{ token, optional }`.
    for (const item of inject) found.push(isOptionalFactoryDependency(item) ? item.token : item);
    return found.map(unwrapForwardRef);
  }
  if (typeof metatype !== 'function') return found;
  const paramTypes: unknown = Reflect.getMetadata(DESIGN_PARAMTYPES, metatype);
  if (Array.isArray(paramTypes)) found.push(...(paramTypes as unknown[]));
  const declared: unknown = Reflect.getMetadata(SELF_DECLARED_DEPS, metatype);
  if (Array.isArray(declared)) for (const item of declared as { param?: unknown }[]) found.push(item.param);
  const properties: unknown = Reflect.getMetadata(PROPERTY_DEPS, metatype);
  if (Array.isArray(properties)) for (const item of properties as { type?: unknown }[]) found.push(item.type);
  return found.map(unwrapForwardRef);
}

function isOptionalFactoryDependency(item: unknown): item is { token: unknown } {
  return typeof item === 'object' && item !== null && 'token' in item;
}

function unwrapForwardRef(token: unknown): unknown {
  if (typeof token === 'object' && token !== null && 'forwardRef' in token) {
    const resolve = token.forwardRef;
    return typeof resolve === 'function' ? (resolve as () => unknown)() : token;
  }
  return token;
}

function nameOf(token: unknown, fallback?: unknown): string {
  if (typeof token === 'function' && token.name !== '' && token.name !== 'useFactory') return token.name;
  if (typeof token === 'symbol') return token.description ?? token.toString();
  if (typeof token === 'string') return token;
  return fallback === undefined ? String(token) : nameOf(fallback);
}
