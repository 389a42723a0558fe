import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { SessionModuleOptions } from '../session/session-module.options.js';

export const { ConfigurableModuleClass: SessionConfigurableModule, MODULE_OPTIONS_TOKEN: SESSION_MODULE_OPTIONS } =
  new ConfigurableModuleBuilder<SessionModuleOptions>({ moduleName: 'Session' })
    .setClassMethodName('forRoot')
    .setFactoryMethodName('createSessionOptions')
    .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
    .build();
