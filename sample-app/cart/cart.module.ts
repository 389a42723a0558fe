import { Module } from '@nestjs/common';
import { SessionModule } from 'nest-session';
import { CartBag } from './cart.bag.js';
import { CartController } from './cart.controller.js';

/** A feature module that ships its own session bag. */
@Module({
  imports: [SessionModule.forFeature({ bags: [() => new CartBag()] })],
  controllers: [CartController],
})
export class CartModule {}
