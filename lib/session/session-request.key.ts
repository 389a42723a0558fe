/** Property under which the adapters attach the request's Session to the framework request. */
export const SESSION_REQUEST_KEY: unique symbol = Symbol('nest-session.session');
