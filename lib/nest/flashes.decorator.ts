import { createParamDecorator, type ExecutionContext, type PipeTransform } from '@nestjs/common';
import { SessionOutsideRequestException } from '../errors/session-outside-request.exception.js';
import { sessionOfExecution } from './execution-session.js';

/** Resolves the promise the decorator factory returns (Nest awaits pipe results). */
class AwaitBagPipe implements PipeTransform {
  transform(value: unknown): unknown {
    return value;
  }
}

const flashBagParam = createParamDecorator((name: string | undefined, context: ExecutionContext): Promise<unknown> => {
  const session = sessionOfExecution(context);
  if (session === undefined) throw SessionOutsideRequestException.create('resolve @Flashes()');
  return session.getBag(name ?? 'flashes');
});

/**
 * Handler parameter: the request's flash bag, loaded and ready:
 * `@Post() save(@Flashes() flashes: FlashBag) { flashes.add('success', 'Saved'); }`.
 * @param bagName name of the flash bag. @default 'flashes'
 */
export function Flashes(bagName?: string): ParameterDecorator {
  return flashBagParam(bagName, new AwaitBagPipe());
}
