import { BadRequestException, Body, Controller, Get, Inject, Post } from '@nestjs/common';
import { SessionInterface } from 'nest-session';
import { CartBag } from './cart.bag.js';

@Controller('cart')
export class CartController {
  constructor(@Inject(SessionInterface) private readonly session: SessionInterface) {}

  @Get()
  async show(): Promise<Record<string, number>> {
    return (await this.session.getBag<CartBag>('cart')).items();
  }

  @Post()
  async add(@Body() body: { sku?: unknown; quantity?: unknown } | undefined): Promise<Record<string, number>> {
    const { sku, quantity = 1 } = body ?? {};
    if (
      typeof sku !== 'string' ||
      !/^[A-Za-z0-9-]{1,40}$/.test(sku) ||
      typeof quantity !== 'number' ||
      !Number.isInteger(quantity)
    ) {
      throw new BadRequestException('Send {"sku": "ABC-1", "quantity": 1}.');
    }
    const cart = await this.session.getBag<CartBag>('cart');
    cart.addItem(sku, quantity);
    return cart.items();
  }
}
