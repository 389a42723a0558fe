/** Token of the resolved, frozen options (`ResolvedSessionOptions`). */
export const SESSION_OPTIONS = Symbol('SESSION_OPTIONS');
